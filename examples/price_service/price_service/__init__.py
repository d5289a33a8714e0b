"""The Django project of the price service example."""
