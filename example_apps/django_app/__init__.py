"""The Django example shop: ``python example_apps/django_app/manage.py runserver``."""
