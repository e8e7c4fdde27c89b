//! The table listing an agent returns for a `ListTables` request.
//!
//! It is an ordinary result stream with this schema, one row per table:
//! `db_schema` (utf8, nullable), `table_name` (utf8), `table_type` (utf8),
//! `table_schema` (binary, nullable: an Arrow IPC schema message).

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, BinaryArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;

/// One table as the agent reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableInfo {
    pub db_schema: Option<String>,
    pub name: String,
    pub table_type: String,
    pub schema: Option<SchemaRef>,
}

pub static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("db_schema", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("table_type", DataType::Utf8, false),
        Field::new("table_schema", DataType::Binary, true),
    ]))
});

pub fn to_batch(tables: &[TableInfo]) -> Result<RecordBatch, ArrowError> {
    let mut enc = super::ipc::IpcEncoder::new(super::pb::Compression::None)?;
    let schemas: Vec<Option<Vec<u8>>> = tables
        .iter()
        .map(|t| t.schema.as_ref().map(|s| enc.schema(s)))
        .collect();
    RecordBatch::try_new(
        SCHEMA.clone(),
        vec![
            Arc::new(StringArray::from_iter(
                tables.iter().map(|t| t.db_schema.as_deref()),
            )),
            Arc::new(StringArray::from_iter_values(
                tables.iter().map(|t| &t.name),
            )),
            Arc::new(StringArray::from_iter_values(
                tables.iter().map(|t| &t.table_type),
            )),
            Arc::new(BinaryArray::from_iter(schemas.iter().map(|s| s.as_deref()))),
        ],
    )
}

pub fn from_batch(batch: &RecordBatch) -> Result<Vec<TableInfo>, ArrowError> {
    let bad = || ArrowError::SchemaError("table listing has an unexpected schema".into());
    if batch.schema().fields() != SCHEMA.fields() {
        return Err(bad());
    }
    let col = |i: usize| batch.column(i).as_any();
    let schemas = col(0).downcast_ref::<StringArray>().ok_or_else(bad)?;
    let names = col(1).downcast_ref::<StringArray>().ok_or_else(bad)?;
    let types = col(2).downcast_ref::<StringArray>().ok_or_else(bad)?;
    let arrow = col(3).downcast_ref::<BinaryArray>().ok_or_else(bad)?;
    (0..batch.num_rows())
        .map(|i| {
            Ok(TableInfo {
                db_schema: schemas.is_valid(i).then(|| schemas.value(i).to_string()),
                name: names.value(i).to_string(),
                table_type: types.value(i).to_string(),
                schema: if arrow.is_valid(i) {
                    Some(super::ipc::decode_schema(arrow.value(i))?)
                } else {
                    None
                },
            })
        })
        .collect()
}
