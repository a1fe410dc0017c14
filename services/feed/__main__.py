"""python -m services.feed — serve the feed (staff API + aggregates)."""

from services.feed.app import create_app
from services.feed.settings import FeedSettings
from shared.service import serve

if __name__ == "__main__":
    settings = FeedSettings()
    serve(create_app(settings), settings)
