"""What the two thin web clients share: sessions in signed cookies with a
CSRF token, French/English catalogues, Jinja2 rendering with autoescape,
the security headers, and the base layout and stylesheet."""
