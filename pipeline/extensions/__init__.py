"""Extensions: components outside the data path (health endpoints, status page)."""
