"""Feed's HTTP routes for staff, one module per area. Every route needs a
staff token; what it allows depends on the account's role (editor <
publisher < admin): too low a role is a 403 naming the role needed."""
