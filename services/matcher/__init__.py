"""matcher: crosses each published message with every volunteer's opt-in
interest profile and suggests it where it fits."""
