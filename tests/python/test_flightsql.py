"""Real third-party Flight SQL clients against a running Gatehouse hub.

Run by the Rust integration test `python::adbc_and_pyarrow_clients`, which
starts a hub and an agent and sets GATEHOUSE_FLIGHT_URI, GATEHOUSE_USER,
GATEHOUSE_PASSWORD. Sources: `tpch` (SQLite, TPC-H SF 0.01), `pg`, `my`
(MariaDB) and `ms` (SQL Server, played by Microsoft's mock TDS server).
"""
import os

import adbc_driver_flightsql.dbapi as flightsql
import polars as pl
import pyarrow as pa
import pyarrow.flight as fl
import pytest
from adbc_driver_flightsql import DatabaseOptions

URI = os.environ["GATEHOUSE_FLIGHT_URI"]
USER = os.environ["GATEHOUSE_USER"]
PASSWORD = os.environ["GATEHOUSE_PASSWORD"]
HEADER = DatabaseOptions.RPC_CALL_HEADER_PREFIX.value


def connect(**headers):
    kwargs = {"username": USER, "password": PASSWORD}
    kwargs.update({HEADER + k: v for k, v in headers.items()})
    return flightsql.connect(URI, db_kwargs=kwargs, autocommit=True)


def test_adbc_statement_on_the_default_source():
    with connect(**{"x-gatehouse-source": "tpch"}) as conn, conn.cursor() as cur:
        cur.execute("SELECT n_nationkey, n_name FROM nation ORDER BY n_nationkey")
        table = cur.fetch_arrow_table()
    assert table.num_rows == 25
    assert table.column("n_name")[0].as_py() == "ALGERIA"
    assert table.schema.field("n_nationkey").type == pa.int64()


def test_adbc_parameters_use_prepared_statements():
    with connect(**{"x-gatehouse-source": "tpch"}) as conn, conn.cursor() as cur:
        cur.execute("SELECT n_name FROM nation WHERE n_regionkey = ? ORDER BY n_name", parameters=(3,))
        names = cur.fetch_arrow_table().column(0).to_pylist()
    assert names == ["FRANCE", "GERMANY", "ROMANIA", "RUSSIA", "UNITED KINGDOM"]


def test_adbc_postgres_types_and_parameters():
    with connect(**{"x-gatehouse-source": "pg"}) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT $1::int8 + 1 AS n, 12.50::numeric(10,2) AS d, DATE '2024-02-29' AS day, "
            "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u, ARRAY[1,2,NULL]::int4[] AS a",
            parameters=(41,),
        )
        t = cur.fetch_arrow_table()
    row = t.to_pylist()[0]
    assert row["n"] == 42
    assert str(row["d"]) == "12.50"
    assert str(row["day"]) == "2024-02-29"
    assert row["a"] == [1, 2, None]
    assert t.schema.field("d").type == pa.decimal128(10, 2)


def test_adbc_mariadb_types_and_parameters():
    with connect(**{"x-gatehouse-source": "my"}) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT ? + 1 AS n, CAST(12.50 AS DECIMAL(10,2)) AS d, "
            "CAST(12345678901234567890123456789012345.5 AS DECIMAL(60,1)) AS wide, "
            "CAST(18446744073709551615 AS UNSIGNED) AS big, DATE '2024-02-29' AS day, "
            "TIME '-25:00:00' AS t",
            parameters=(41,),
        )
        t = cur.fetch_arrow_table()
    row = t.to_pylist()[0]
    assert row["n"] == 42
    assert str(row["d"]) == "12.50"
    assert str(row["wide"]) == "12345678901234567890123456789012345.5"
    assert row["big"] == 18446744073709551615
    assert str(row["day"]) == "2024-02-29"
    assert row["t"].total_seconds() == -25 * 3600
    assert t.schema.field("wide").type == pa.decimal256(60, 1)
    assert t.schema.field("big").type == pa.uint64()


def test_adbc_sqlserver_through_the_mock_tds_server():
    with connect(**{"x-gatehouse-source": "ms"}) as conn, conn.cursor() as cur:
        cur.execute("SELECT ID, NAME, VISITS FROM USERS_GH")
        t = cur.fetch_arrow_table()
    assert t.to_pylist() == [
        {"id": 1, "name": "Zoë ✓", "visits": 9223372036854775807},
        {"id": -2, "name": None, "visits": None},
    ]
    assert t.schema.field("id").type == pa.int32()


def test_adbc_reload_mode_with_zstd_streams_all_rows():
    with connect(**{"x-gatehouse-source": "tpch", "x-gatehouse-mode": "reload", "x-gatehouse-compression": "zstd"}) as conn, conn.cursor() as cur:
        cur.execute("SELECT * FROM lineitem")
        table = cur.fetch_arrow_table()
    assert table.num_rows == 60175
    assert table.num_columns == 16


def test_adbc_metadata():
    with connect() as conn:
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        catalogs = sorted(o["catalog_name"] for o in objects)
        assert catalogs == ["ms", "my", "pg", "tpch"]
        ms = next(o for o in objects if o["catalog_name"] == "ms")
        views = {t["table_name"]: t["table_type"] for s in ms["catalog_db_schemas"] for t in s["db_schema_tables"]}
        assert views == {"orders": "TABLE", "v_orders": "VIEW"}
        tpch = next(o for o in objects if o["catalog_name"] == "tpch")
        tables = {t["table_name"] for s in tpch["catalog_db_schemas"] for t in s["db_schema_tables"]}
        assert {"lineitem", "nation", "orders"} <= tables
        schema = conn.adbc_get_table_schema("nation", catalog_filter="tpch", db_schema_filter="main")
        assert schema.names == ["n_nationkey", "n_name", "n_regionkey", "n_comment"]
        info = conn.adbc_get_info()
        assert info["vendor_name"] == "Gatehouse"


def test_adbc_errors_carry_the_database_message():
    with connect(**{"x-gatehouse-source": "pg"}) as conn, conn.cursor() as cur:
        with pytest.raises(Exception) as err:
            cur.execute("SELEC 1")
        assert "syntax error" in str(err.value)


def test_adbc_wrong_password_is_refused():
    with pytest.raises(Exception) as err:
        flightsql.connect(URI, db_kwargs={"username": USER, "password": "nope"}).cursor().execute("SELECT 1")
    assert "Unauthenticated" in str(err.value) or "UNAUTHENTICATED" in str(err.value) or "invalid user name or password" in str(err.value)


def test_polars_through_adbc():
    with connect(**{"x-gatehouse-source": "tpch"}) as conn:
        df = pl.read_database("SELECT r_name FROM region ORDER BY r_name", connection=conn)
    assert df["r_name"].to_list() == ["AFRICA", "AMERICA", "ASIA", "EUROPE", "MIDDLE EAST"]


def _any(type_name: str, payload: bytes) -> bytes:
    """Wraps a Flight SQL command in protobuf Any, by hand (pyarrow has no helpers)."""

    def field(num, data):
        out, n = bytes([num << 3 | 2]), len(data)
        while True:
            b = n & 0x7F
            n >>= 7
            out += bytes([b | (0x80 if n else 0)])
            if not n:
                return out + data

    url = ("type.googleapis.com/arrow.flight.protocol.sql." + type_name).encode()
    return field(1, url) + field(2, payload)


def test_adbc_with_a_jwt_from_the_identity_provider():
    jwt = os.environ["GATEHOUSE_JWT"]
    options = {DatabaseOptions.AUTHORIZATION_HEADER.value: "Bearer " + jwt, HEADER + "x-gatehouse-source": "tpch"}
    with flightsql.connect(URI, db_kwargs=options, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) AS n FROM orders")
        assert cur.fetchone()[0] == 15000
    head, payload, sig = jwt.split(".")
    i = len(sig) // 2
    forged = ".".join([head, payload, sig[:i] + ("B" if sig[i] != "B" else "C") + sig[i + 1:]])
    options[DatabaseOptions.AUTHORIZATION_HEADER.value] = "Bearer " + forged
    with pytest.raises(Exception) as err:
        with flightsql.connect(URI, db_kwargs=options, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
    assert "signature" in str(err.value)


def test_pyarrow_flight_basic_auth_and_statement():
    client = fl.FlightClient(URI)
    token = client.authenticate_basic_token(USER.encode(), PASSWORD.encode())
    opts = fl.FlightCallOptions(headers=[token, (b"x-gatehouse-source", b"tpch")])
    cmd = _any("CommandStatementQuery", bytes([0x0A, len(b"SELECT count(*) AS n FROM orders")]) + b"SELECT count(*) AS n FROM orders")
    info = client.get_flight_info(fl.FlightDescriptor.for_command(cmd), opts)
    assert info.schema.names == ["n"]
    table = client.do_get(info.endpoints[0].ticket, opts).read_all()
    assert table.column("n")[0].as_py() == 15000
    with pytest.raises(fl.FlightUnauthenticatedError):
        client.get_flight_info(fl.FlightDescriptor.for_command(cmd))
