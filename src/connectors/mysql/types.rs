//! MySQL / MariaDB column types and the Arrow type each becomes.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, TimeUnit};
use mysql_async::consts::{ColumnFlags, ColumnType};

/// The `binary` character set: the column holds bytes, not text.
pub const BINARY_CHARSET: u16 = 63;

/// What a result column decodes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    /// `SELECT NULL`: no type at all.
    Null,
    /// `BIT(1)`.
    Bool,
    /// `BIT(n)`, n > 1: the bits as an unsigned integer.
    Bits,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    F32,
    F64,
    /// Precision and scale; precision above 38 becomes a 256-bit decimal.
    Decimal(u8, i8),
    Date,
    /// `DATETIME`: wall-clock time, no zone.
    DateTime,
    /// `TIMESTAMP`: an instant, read in the session's UTC zone.
    Timestamp,
    /// `TIME`: a signed duration (MySQL allows -838:59:59 to 838:59:59).
    Time,
    Year,
    Text,
    Binary,
    /// `SET`: the chosen members.
    Set,
}

impl ColType {
    pub fn data_type(&self) -> DataType {
        match self {
            ColType::Null => DataType::Null,
            ColType::Bool => DataType::Boolean,
            ColType::Bits | ColType::U64 => DataType::UInt64,
            ColType::I8 => DataType::Int8,
            ColType::I16 => DataType::Int16,
            ColType::I32 => DataType::Int32,
            ColType::I64 => DataType::Int64,
            ColType::U8 => DataType::UInt8,
            ColType::U16 | ColType::Year => DataType::UInt16,
            ColType::U32 => DataType::UInt32,
            ColType::F32 => DataType::Float32,
            ColType::F64 => DataType::Float64,
            ColType::Decimal(p, s) if *p <= 38 => DataType::Decimal128(*p, *s),
            ColType::Decimal(p, s) => DataType::Decimal256(*p, *s),
            ColType::Date => DataType::Date32,
            ColType::DateTime => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ColType::Time => DataType::Duration(TimeUnit::Microsecond),
            ColType::Text => DataType::Utf8,
            ColType::Binary => DataType::Binary,
            ColType::Set => DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, false))),
        }
    }

    pub fn field(&self, name: &str) -> Field {
        Field::new(name, self.data_type(), true)
    }
}

/// The type of a column from its wire metadata.
pub fn col_type(
    ty: ColumnType,
    flags: ColumnFlags,
    length: u32,
    decimals: u8,
    charset: u16,
) -> ColType {
    use ColumnType::*;
    let unsigned = flags.contains(ColumnFlags::UNSIGNED_FLAG);
    let int = |s: ColType, u: ColType| if unsigned { u } else { s };
    match ty {
        MYSQL_TYPE_NULL => ColType::Null,
        MYSQL_TYPE_TINY => int(ColType::I8, ColType::U8),
        MYSQL_TYPE_SHORT => int(ColType::I16, ColType::U16),
        MYSQL_TYPE_INT24 | MYSQL_TYPE_LONG => int(ColType::I32, ColType::U32),
        MYSQL_TYPE_LONGLONG => int(ColType::I64, ColType::U64),
        MYSQL_TYPE_FLOAT => ColType::F32,
        MYSQL_TYPE_DOUBLE => ColType::F64,
        MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => {
            // The display length counts the digits, the point and the sign.
            let point = u32::from(decimals > 0);
            let sign = u32::from(!unsigned);
            let precision = length.saturating_sub(point + sign).clamp(1, 76);
            let scale = decimals.min(precision as u8);
            ColType::Decimal(precision as u8, scale as i8)
        }
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => ColType::Date,
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => ColType::DateTime,
        MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => ColType::Timestamp,
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => ColType::Time,
        MYSQL_TYPE_YEAR => ColType::Year,
        MYSQL_TYPE_BIT if length <= 1 => ColType::Bool,
        MYSQL_TYPE_BIT => ColType::Bits,
        // MySQL's JSON is always utf8mb4 text, though it is labelled binary.
        MYSQL_TYPE_JSON => ColType::Text,
        MYSQL_TYPE_SET => ColType::Set,
        MYSQL_TYPE_ENUM => ColType::Text,
        _ if flags.contains(ColumnFlags::SET_FLAG) => ColType::Set,
        _ if flags.contains(ColumnFlags::ENUM_FLAG) => ColType::Text,
        MYSQL_TYPE_GEOMETRY | MYSQL_TYPE_VECTOR => ColType::Binary,
        _ if charset == BINARY_CHARSET => ColType::Binary,
        _ => ColType::Text,
    }
}

/// The type of a column from `information_schema.COLUMNS`, for catalog
/// listings (no result metadata there). `column_type` is e.g. `int(10) unsigned`.
pub fn from_information_schema(
    data_type: &str,
    column_type: &str,
    precision: Option<u64>,
    scale: Option<u64>,
    charset: Option<&str>,
) -> ColType {
    let unsigned = column_type.to_ascii_lowercase().contains("unsigned");
    let int = |s: ColType, u: ColType| if unsigned { u } else { s };
    match data_type.to_ascii_lowercase().as_str() {
        "tinyint" => int(ColType::I8, ColType::U8),
        "smallint" => int(ColType::I16, ColType::U16),
        "mediumint" | "int" | "integer" => int(ColType::I32, ColType::U32),
        "bigint" => int(ColType::I64, ColType::U64),
        "float" => ColType::F32,
        "double" | "real" => ColType::F64,
        "decimal" | "numeric" => {
            let p = precision.unwrap_or(10).clamp(1, 76) as u8;
            ColType::Decimal(p, scale.unwrap_or(0).min(p as u64) as i8)
        }
        "date" => ColType::Date,
        "datetime" => ColType::DateTime,
        "timestamp" => ColType::Timestamp,
        "time" => ColType::Time,
        "year" => ColType::Year,
        "bit" if precision.unwrap_or(1) <= 1 => ColType::Bool,
        "bit" => ColType::Bits,
        "set" => ColType::Set,
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "geometry"
        | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" | "vector" => ColType::Binary,
        _ if charset == Some("binary") => ColType::Binary,
        _ => ColType::Text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_precision_from_display_length() {
        let signed = ColumnFlags::empty();
        // DECIMAL(15,2): 15 digits + point + sign.
        assert_eq!(
            col_type(ColumnType::MYSQL_TYPE_NEWDECIMAL, signed, 17, 2, 63),
            ColType::Decimal(15, 2)
        );
        // DECIMAL(10,0) UNSIGNED: no point, no sign.
        assert_eq!(
            col_type(
                ColumnType::MYSQL_TYPE_NEWDECIMAL,
                ColumnFlags::UNSIGNED_FLAG,
                10,
                0,
                63
            ),
            ColType::Decimal(10, 0)
        );
        // DECIMAL(65,30) goes past Decimal128.
        let wide = col_type(ColumnType::MYSQL_TYPE_NEWDECIMAL, signed, 67, 30, 63);
        assert_eq!(wide.data_type(), DataType::Decimal256(65, 30));
    }

    #[test]
    fn strings_by_character_set_and_flags() {
        let t = ColumnType::MYSQL_TYPE_VAR_STRING;
        assert_eq!(col_type(t, ColumnFlags::empty(), 40, 0, 45), ColType::Text);
        assert_eq!(
            col_type(t, ColumnFlags::empty(), 40, 0, 63),
            ColType::Binary
        );
        let s = ColumnType::MYSQL_TYPE_STRING;
        assert_eq!(col_type(s, ColumnFlags::ENUM_FLAG, 5, 0, 45), ColType::Text);
        assert_eq!(col_type(s, ColumnFlags::SET_FLAG, 5, 0, 45), ColType::Set);
        assert_eq!(
            col_type(ColumnType::MYSQL_TYPE_JSON, ColumnFlags::empty(), 0, 0, 63),
            ColType::Text
        );
    }

    #[test]
    fn information_schema_types_match_the_wire() {
        assert_eq!(
            from_information_schema("int", "int(10) unsigned", Some(10), Some(0), None),
            ColType::U32
        );
        assert_eq!(
            from_information_schema("decimal", "decimal(15,2)", Some(15), Some(2), None),
            ColType::Decimal(15, 2)
        );
        assert_eq!(
            from_information_schema("varchar", "varchar(10)", None, None, Some("utf8mb4")),
            ColType::Text
        );
        assert_eq!(
            from_information_schema("bit", "bit(8)", Some(8), None, None),
            ColType::Bits
        );
    }
}
