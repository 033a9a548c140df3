"""Creates the staff role groups (apps/accounts/roles.py) with their permissions.

Permissions are normally created after `migrate` (post_migrate); they are created here first,
from this migration's historical models, so the groups get them on a fresh database. Models
added later reach the groups with `manage.py sync_roles`."""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def forwards(apps, schema_editor):
    from apps.accounts.roles import roles_apply

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    roles_apply(group_model=apps.get_model("auth", "Group"),
                permission_model=apps.get_model("auth", "Permission"),
                content_type_model=apps.get_model("contenttypes", "ContentType"))


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("admin", "0003_logentry_add_action_flag_choices"),
        ("sessions", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
        ("otp_totp", "0003_add_timestamps"),
        ("core", "0001_initial"),
        ("clients", "0003_delivery_policy"),
        ("recipients", "0004_attributes_gin"),
        ("templates", "0004_active_versions_from_existing"),
        ("notifications", "0004_delivery_template_version"),
        ("webhooks", "0001_initial"),
        ("preferences", "0001_initial"),
        ("segments", "0001_initial"),
        ("scheduling", "0001_initial"),
        ("audit", "0001_initial"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
