"""The local run's Glue Data Catalog, as the Lambdas see it: GetTable, answered from the Iceberg
catalog the Spark job writes locally (Iceberg's JDBC catalog, a SQLite file in the lake folder).

On AWS the job's Iceberg catalog is Glue itself: each commit moves the table's `metadata_location`
parameter, which AssessStepFailure, VerifyGold and ReportStatus read with `glue:GetTable`. Locally
the same Lambda code calls this client instead: the request is checked against botocore's model of
the API, the answer has the API's shape (a table of type ICEBERG with its `metadata_location`),
a missing table raises Glue's EntityNotFoundException, and the IAM rehearsal checks each call
against the function's role (`iam.AuthorizedGlue`). The file is read, never written: Spark's JDBC
catalog is its only writer.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from botocore.exceptions import ClientError

from iotpipe.lake.tables import SPARK_CATALOG


class EntityNotFoundException(ClientError):
    pass


class _Exceptions:
    EntityNotFoundException = EntityNotFoundException


def _check_request(operation: str, params: dict) -> None:
    """What botocore checks before sending: the request's shape, from the service model."""
    import botocore.session
    from botocore.validate import validate_parameters

    model = botocore.session.get_session().get_service_model("glue").operation_model(operation)
    validate_parameters(params, model.input_shape)


class LocalGlue:
    """glue:GetTable over the local Iceberg catalog (a read-only SQLite connection per call)."""

    exceptions = _Exceptions

    def __init__(self, sqlite_file: str, catalog_name: str = SPARK_CATALOG) -> None:
        self.sqlite_file, self.catalog_name = sqlite_file, catalog_name

    def _row(self, database: str, table: str):
        if not Path(self.sqlite_file).exists():
            return None
        connection = sqlite3.connect(f"file:{self.sqlite_file}?mode=ro", uri=True, timeout=60)
        try:
            return connection.execute(
                "SELECT metadata_location, previous_metadata_location FROM iceberg_tables "
                "WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?",
                (self.catalog_name, database, table),
            ).fetchone()
        except sqlite3.OperationalError:  # the job has not created the catalog's tables yet
            return None
        finally:
            connection.close()

    def get_table(self, **params) -> dict:
        _check_request("GetTable", params)
        database, name = params["DatabaseName"], params["Name"]
        row = self._row(database, name)
        if row is None:
            error = {"Error": {"Code": "EntityNotFoundException", "Message": f"Table {name} not found."}}
            raise EntityNotFoundException(error, "GetTable")
        parameters = {"table_type": "ICEBERG", "metadata_location": row[0]}
        if row[1]:
            parameters["previous_metadata_location"] = row[1]
        return {
            "Table": {"Name": name, "DatabaseName": database, "TableType": "EXTERNAL_TABLE", "Parameters": parameters}
        }
