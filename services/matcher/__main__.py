"""python -m services.matcher — serve the matcher."""

from services.matcher.app import create_app
from services.matcher.settings import MatcherSettings
from shared.service import serve

if __name__ == "__main__":
    settings = MatcherSettings()
    serve(create_app(settings), settings)
