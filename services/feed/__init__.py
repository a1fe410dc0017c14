"""feed: the staff's publishing desk and the home of staff aggregates."""
