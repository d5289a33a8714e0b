# ruff: noqa: RUF012  (Django's migration format: class-level lists)
from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.CreateModel(
            name="Trade",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("symbol", models.CharField(db_index=True, max_length=20)),
                ("price", models.FloatField()),
                ("qty", models.FloatField()),
                ("executed_at", models.DateTimeField()),
            ],
        ),
    ]
