"""Existing data: locales in one spelling, each template's default locale taken from its
active version, and that version recorded as active (and published) for its locale."""

import re

from django.db import migrations


def _normalize(value):
    parts = [p for p in re.split(r"[-_]", (value or "").strip()) if p]
    if not parts:
        return "en"
    out = [parts[0].lower()]
    for part in parts[1:]:
        if len(part) == 2 and part.isalpha():
            out.append(part.upper())
        elif len(part) == 4 and part.isalpha():
            out.append(part.title())
        else:
            out.append(part.lower())
    return "-".join(out)


def forwards(apps, schema_editor):
    Template = apps.get_model("templates", "Template")
    TemplateVersion = apps.get_model("templates", "TemplateVersion")
    TemplateActiveVersion = apps.get_model("templates", "TemplateActiveVersion")
    TemplatePublication = apps.get_model("templates", "TemplatePublication")

    for version in TemplateVersion.objects.only("id", "locale").iterator():
        normalized = _normalize(version.locale)
        if normalized != version.locale:
            TemplateVersion.objects.filter(pk=version.pk).update(locale=normalized)

    templates = Template.objects.filter(active_version__isnull=False).select_related("active_version")
    for template in templates.iterator():
        version = template.active_version
        Template.objects.filter(pk=template.pk).update(default_locale=version.locale)
        TemplateActiveVersion.objects.create(
            template_id=template.pk, locale=version.locale, version_id=version.pk,
            published_at=template.updated_at, published_by="migration",
        )
        TemplatePublication.objects.create(
            template_id=template.pk, locale=version.locale, version_id=version.pk,
            action="publish", actor="migration",
        )


class Migration(migrations.Migration):

    dependencies = [
        ("templates", "0003_locales_and_publishing"),
    ]

    operations = [
        migrations.RunPython(forwards, migrations.RunPython.noop),
    ]
