"""`manage.py rotate_pii_keys [--rehash] [--batch-size N] [--model app.Model …]`

Re-encrypts every encrypted column of every model under the primary (first) key of
PII_ENCRYPTION_KEYS, and fills missing keyed hashes; with `--rehash`, recomputes every hash
with the current PII_HASH_KEY (from the decrypted values). Batches are committed one by one;
rows already under the primary key are only read, so the command is idempotent and a run that
stopped is resumed by running it again. Runbook: docs/operations.md "PII encryption keys".
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.crypto import PIIDecryptionError
from apps.core.pii_rotation import DEFAULT_BATCH_SIZE, TableReport, encrypted_models, reencrypt_model


class Command(BaseCommand):
    help = ("Re-encrypt stored PII under the primary key of PII_ENCRYPTION_KEYS (and recompute "
            "the lookup hashes with --rehash after changing PII_HASH_KEY).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rehash", action="store_true",
                            help="recompute every *_hash column with the current PII_HASH_KEY")
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                            help=f"rows per committed batch (default {DEFAULT_BATCH_SIZE})")
        parser.add_argument("--model", action="append", default=[], metavar="APP.MODEL",
                            help="only this model (repeatable), e.g. recipients.Recipient")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        models = encrypted_models()
        if options["model"]:
            try:
                wanted = {apps.get_model(label) for label in options["model"]}
            except (LookupError, ValueError) as exc:
                raise CommandError(str(exc)) from exc
            unknown = wanted - set(models)
            if unknown:
                raise CommandError(f"No encrypted fields on: {', '.join(m._meta.label for m in unknown)}.")
            models = [m for m in models if m in wanted]
        for model in models:
            self.stdout.write(f"{model._meta.label}: starting")
            try:
                report = reencrypt_model(model, rehash=options["rehash"],
                                         batch_size=options["batch_size"], progress=self._progress)
            except PIIDecryptionError as exc:
                raise CommandError(
                    f"{model._meta.label}: {exc} Put the missing key back in "
                    "PII_ENCRYPTION_KEYS (after the primary) and run again."
                ) from exc
            self.stdout.write(self.style.SUCCESS(
                f"{report.label}: done, {report.scanned} rows checked, {report.rewritten} "
                f"rewritten, {report.skipped_changed} changed meanwhile (already current), "
                f"{report.seconds:.1f} s"))

    def _progress(self, report: TableReport) -> None:
        total = max(report.total, report.scanned)
        percent = 100.0 * report.scanned / total if total else 100.0
        self.stdout.write(f"  {report.label}: {report.scanned}/{total} rows ({percent:.0f} %), "
                          f"{report.rewritten} rewritten, {report.rate:.0f} rows/s")
