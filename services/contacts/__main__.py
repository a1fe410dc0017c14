"""python -m services.contacts — serve the volunteers' contact books."""

from services.contacts.app import create_app
from services.contacts.settings import ContactsSettings
from shared.service import serve

if __name__ == "__main__":
    settings = ContactsSettings()
    serve(create_app(settings), settings)
