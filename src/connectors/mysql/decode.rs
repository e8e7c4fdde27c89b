//! MySQL values into Arrow builders. The binary protocol (prepared
//! statements) delivers numbers, dates and times typed; decimals, strings and
//! the text protocol deliver text, which is parsed here.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Decimal256Builder,
    DurationMicrosecondBuilder, Float32Builder, Float64Builder, Int8Builder, Int16Builder,
    Int32Builder, Int64Builder, ListBuilder, NullBuilder, StringBuilder,
    TimestampMicrosecondBuilder, UInt8Builder, UInt16Builder, UInt32Builder, UInt64Builder,
};
use arrow::datatypes::{Field, i256};
use chrono::NaiveDate;
use mysql_async::Value;

use super::types::ColType;

enum Builder {
    Null(NullBuilder),
    Bool(BooleanBuilder),
    I8(Int8Builder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    U8(UInt8Builder),
    U16(UInt16Builder),
    U32(UInt32Builder),
    U64(UInt64Builder),
    /// `BIT(n)`: big-endian bytes in both protocols.
    Bits(UInt64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Dec128(Decimal128Builder, i8),
    Dec256(Decimal256Builder, i8),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder),
    Time(DurationMicrosecondBuilder),
    Text(StringBuilder),
    Bin(BinaryBuilder),
    Set(ListBuilder<StringBuilder>),
}

/// One result column being built.
pub struct Column {
    builder: Builder,
}

const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

impl Column {
    pub fn new(t: ColType, cap: usize) -> Column {
        let builder = match t {
            ColType::Null => Builder::Null(NullBuilder::new()),
            ColType::Bool => Builder::Bool(BooleanBuilder::with_capacity(cap)),
            ColType::I8 => Builder::I8(Int8Builder::with_capacity(cap)),
            ColType::I16 => Builder::I16(Int16Builder::with_capacity(cap)),
            ColType::I32 => Builder::I32(Int32Builder::with_capacity(cap)),
            ColType::I64 => Builder::I64(Int64Builder::with_capacity(cap)),
            ColType::U8 => Builder::U8(UInt8Builder::with_capacity(cap)),
            ColType::U16 | ColType::Year => Builder::U16(UInt16Builder::with_capacity(cap)),
            ColType::U32 => Builder::U32(UInt32Builder::with_capacity(cap)),
            ColType::U64 => Builder::U64(UInt64Builder::with_capacity(cap)),
            ColType::Bits => Builder::Bits(UInt64Builder::with_capacity(cap)),
            ColType::F32 => Builder::F32(Float32Builder::with_capacity(cap)),
            ColType::F64 => Builder::F64(Float64Builder::with_capacity(cap)),
            ColType::Decimal(p, s) if p <= 38 => Builder::Dec128(
                Decimal128Builder::with_capacity(cap)
                    .with_precision_and_scale(p, s)
                    .expect("precision checked by col_type"),
                s,
            ),
            ColType::Decimal(p, s) => Builder::Dec256(
                Decimal256Builder::with_capacity(cap)
                    .with_precision_and_scale(p, s)
                    .expect("precision checked by col_type"),
                s,
            ),
            ColType::Date => Builder::Date(Date32Builder::with_capacity(cap)),
            ColType::DateTime => Builder::Ts(TimestampMicrosecondBuilder::with_capacity(cap)),
            ColType::Timestamp => {
                Builder::Ts(TimestampMicrosecondBuilder::with_capacity(cap).with_timezone("UTC"))
            }
            ColType::Time => Builder::Time(DurationMicrosecondBuilder::with_capacity(cap)),
            ColType::Text => Builder::Text(StringBuilder::with_capacity(cap, cap * 16)),
            ColType::Binary => Builder::Bin(BinaryBuilder::with_capacity(cap, cap * 16)),
            ColType::Set => Builder::Set(
                ListBuilder::with_capacity(StringBuilder::new(), cap).with_field(Arc::new(
                    Field::new_list_field(arrow::datatypes::DataType::Utf8, false),
                )),
            ),
        };
        Column { builder }
    }

    /// Appends one value; `Err` says why it does not fit the column's type.
    pub fn append(&mut self, v: Value) -> Result<(), String> {
        use Builder as B;
        if matches!(v, Value::NULL) {
            self.append_null();
            return Ok(());
        }
        match &mut self.builder {
            B::Null(b) => b.append_null(),
            B::Bool(b) => b.append_value(bits(&v)? != 0),
            B::Bits(b) => b.append_value(bits(&v)?),
            B::I8(b) => b.append_value(narrow(signed(&v)?)?),
            B::I16(b) => b.append_value(narrow(signed(&v)?)?),
            B::I32(b) => b.append_value(narrow(signed(&v)?)?),
            B::I64(b) => b.append_value(signed(&v)?),
            B::U8(b) => b.append_value(narrow(unsigned(&v)?)?),
            B::U16(b) => b.append_value(narrow(unsigned(&v)?)?),
            B::U32(b) => b.append_value(narrow(unsigned(&v)?)?),
            B::U64(b) => b.append_value(unsigned(&v)?),
            B::F32(b) => b.append_value(float(&v)? as f32),
            B::F64(b) => b.append_value(float(&v)?),
            B::Dec128(b, s) => b.append_value(decimal(text(&v)?, *s)?),
            B::Dec256(b, s) => b.append_value(decimal256(text(&v)?, *s)?),
            B::Date(b) => match datetime_micros(&v)? {
                Some(us) => b.append_value(us.div_euclid(86_400_000_000) as i32),
                None => b.append_null(),
            },
            B::Ts(b) => b.append_option(datetime_micros(&v)?),
            B::Time(b) => b.append_value(time_micros(&v)?),
            B::Text(b) => b.append_value(text(&v)?),
            B::Bin(b) => match &v {
                Value::Bytes(x) => b.append_value(x),
                other => return Err(format!("expected bytes, got {other:?}")),
            },
            B::Set(b) => {
                let t = text(&v)?;
                for member in t.split(',').filter(|m| !m.is_empty()) {
                    b.values().append_value(member);
                }
                b.append(true);
            }
        }
        Ok(())
    }

    fn append_null(&mut self) {
        use Builder as B;
        match &mut self.builder {
            B::Null(b) => b.append_null(),
            B::Bool(b) => b.append_null(),
            B::I8(b) => b.append_null(),
            B::I16(b) => b.append_null(),
            B::I32(b) => b.append_null(),
            B::I64(b) => b.append_null(),
            B::U8(b) => b.append_null(),
            B::U16(b) => b.append_null(),
            B::U32(b) => b.append_null(),
            B::U64(b) | B::Bits(b) => b.append_null(),
            B::F32(b) => b.append_null(),
            B::F64(b) => b.append_null(),
            B::Dec128(b, _) => b.append_null(),
            B::Dec256(b, _) => b.append_null(),
            B::Date(b) => b.append_null(),
            B::Ts(b) => b.append_null(),
            B::Time(b) => b.append_null(),
            B::Text(b) => b.append_null(),
            B::Bin(b) => b.append_null(),
            B::Set(b) => b.append(false),
        }
    }

    pub fn finish(&mut self) -> ArrayRef {
        use Builder as B;
        match &mut self.builder {
            B::Null(b) => Arc::new(b.finish()),
            B::Bool(b) => Arc::new(b.finish()),
            B::I8(b) => Arc::new(b.finish()),
            B::I16(b) => Arc::new(b.finish()),
            B::I32(b) => Arc::new(b.finish()),
            B::I64(b) => Arc::new(b.finish()),
            B::U8(b) => Arc::new(b.finish()),
            B::U16(b) => Arc::new(b.finish()),
            B::U32(b) => Arc::new(b.finish()),
            B::U64(b) | B::Bits(b) => Arc::new(b.finish()),
            B::F32(b) => Arc::new(b.finish()),
            B::F64(b) => Arc::new(b.finish()),
            B::Dec128(b, _) => Arc::new(b.finish()),
            B::Dec256(b, _) => Arc::new(b.finish()),
            B::Date(b) => Arc::new(b.finish()),
            B::Ts(b) => Arc::new(b.finish()),
            B::Time(b) => Arc::new(b.finish()),
            B::Text(b) => Arc::new(b.finish()),
            B::Bin(b) => Arc::new(b.finish()),
            B::Set(b) => Arc::new(b.finish()),
        }
    }
}

/// Bytes a value occupies on the wire, roughly; sizes batches by memory.
pub fn value_bytes(v: &Value) -> usize {
    match v {
        Value::NULL => 0,
        Value::Bytes(b) => b.len(),
        Value::Date(..) | Value::Time(..) => 8,
        _ => 8,
    }
}

fn text(v: &Value) -> Result<&str, String> {
    match v {
        Value::Bytes(b) => {
            std::str::from_utf8(b).map_err(|_| "text is not valid UTF-8".to_string())
        }
        other => Err(format!("expected text, got {other:?}")),
    }
}

fn signed(v: &Value) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::UInt(u) => i64::try_from(*u).map_err(|_| format!("{u} is out of range")),
        Value::Bytes(_) => text(v)?
            .trim()
            .parse()
            .map_err(|e| format!("not an integer: {e}")),
        other => Err(format!("expected an integer, got {other:?}")),
    }
}

fn unsigned(v: &Value) -> Result<u64, String> {
    match v {
        Value::UInt(u) => Ok(*u),
        Value::Int(i) => u64::try_from(*i).map_err(|_| format!("{i} is out of range")),
        Value::Bytes(_) => text(v)?
            .trim()
            .parse()
            .map_err(|e| format!("not an unsigned integer: {e}")),
        other => Err(format!("expected an integer, got {other:?}")),
    }
}

fn bits(v: &Value) -> Result<u64, String> {
    match v {
        Value::Bytes(b) if b.len() <= 8 => {
            Ok(b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
        }
        Value::Int(_) | Value::UInt(_) => unsigned(v),
        other => Err(format!("expected bits, got {other:?}")),
    }
}

fn narrow<T: TryFrom<S>, S: Copy + std::fmt::Display>(v: S) -> Result<T, String> {
    T::try_from(v).map_err(|_| format!("{v} is out of range for the column type"))
}

fn float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Float(f) => Ok(f64::from(*f)),
        Value::Double(d) => Ok(*d),
        Value::Int(i) => Ok(*i as f64),
        Value::UInt(u) => Ok(*u as f64),
        Value::Bytes(_) => text(v)?
            .trim()
            .parse()
            .map_err(|e| format!("not a number: {e}")),
        other => Err(format!("expected a number, got {other:?}")),
    }
}

/// Digits of a decimal text at `scale`, fed to `push` one at a time.
fn decimal_digits(s: &str, scale: i8, mut push: impl FnMut(u8) -> bool) -> Result<bool, String> {
    let bad = || format!("not a decimal: {s:?}");
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() && frac.is_empty() {
        return Err(bad());
    }
    let scale = usize::try_from(scale).map_err(|_| bad())?;
    if frac.len() > scale {
        return Err(format!("{s} has more than {scale} decimal places"));
    }
    for c in int.bytes().chain(frac.bytes()) {
        if !c.is_ascii_digit() || !push(c - b'0') {
            return Err(bad());
        }
    }
    for _ in frac.len()..scale {
        if !push(0) {
            return Err(bad());
        }
    }
    Ok(neg)
}

fn decimal(s: &str, scale: i8) -> Result<i128, String> {
    let mut acc: i128 = 0;
    let neg = decimal_digits(s, scale, |d| {
        match acc
            .checked_mul(10)
            .and_then(|a| a.checked_add(i128::from(d)))
        {
            Some(a) => {
                acc = a;
                true
            }
            None => false,
        }
    })?;
    Ok(if neg { -acc } else { acc })
}

fn decimal256(s: &str, scale: i8) -> Result<i256, String> {
    let ten = i256::from_i128(10);
    let mut acc = i256::ZERO;
    let neg = decimal_digits(s, scale, |d| {
        match acc
            .checked_mul(ten)
            .and_then(|a| a.checked_add(i256::from_i128(i128::from(d))))
        {
            Some(a) => {
                acc = a;
                true
            }
            None => false,
        }
    })?;
    Ok(if neg { acc.wrapping_neg() } else { acc })
}

fn days(y: i32, m: u32, d: u32) -> Option<i64> {
    NaiveDate::from_ymd_opt(y, m, d)
        .map(|date| i64::from(chrono::Datelike::num_days_from_ce(&date) - UNIX_EPOCH_DAYS_FROM_CE))
}

/// Microseconds since the epoch; `None` for MySQL's zero date
/// (`0000-00-00`), which no calendar has.
fn datetime_micros(v: &Value) -> Result<Option<i64>, String> {
    let (y, mo, d, h, mi, s, us) = match v {
        Value::Date(y, mo, d, h, mi, s, us) => (
            i32::from(*y),
            u32::from(*mo),
            u32::from(*d),
            i64::from(*h),
            i64::from(*mi),
            i64::from(*s),
            i64::from(*us),
        ),
        Value::Bytes(_) => parse_datetime(text(v)?)?,
        other => return Err(format!("expected a date, got {other:?}")),
    };
    if mo == 0 || d == 0 {
        return Ok(None);
    }
    let days = days(y, mo, d).ok_or_else(|| format!("invalid date {y}-{mo}-{d}"))?;
    if !(0..24).contains(&h)
        || !(0..60).contains(&mi)
        || !(0..62).contains(&s)
        || !(0..1_000_000).contains(&us)
    {
        return Err(format!("invalid time of day {h}:{mi}:{s}"));
    }
    Ok(Some(
        ((days * 24 + h) * 60 + mi) * 60 * 1_000_000 + s * 1_000_000 + us,
    ))
}

type DateParts = (i32, u32, u32, i64, i64, i64, i64);

/// `YYYY-MM-DD[ HH:MM:SS[.ffffff]]`, as the text protocol sends it.
fn parse_datetime(s: &str) -> Result<DateParts, String> {
    let bad = || format!("not a date/time: {s:?}");
    let (date, time) = s.split_once(' ').unwrap_or((s, "00:00:00"));
    let mut d = date.split('-').map(|p| p.parse::<u32>());
    let (Some(Ok(y)), Some(Ok(mo)), Some(Ok(day))) = (d.next(), d.next(), d.next()) else {
        return Err(bad());
    };
    let (neg, h, mi, sec, us) = parse_time(time)?;
    if neg {
        return Err(bad());
    }
    Ok((y as i32, mo, day, h, mi, sec, us))
}

/// `[-]H+:MM:SS[.ffffff]`.
fn parse_time(s: &str) -> Result<(bool, i64, i64, i64, i64), String> {
    let bad = || format!("not a time: {s:?}");
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (hms, frac) = body.split_once('.').unwrap_or((body, ""));
    let mut p = hms.split(':').map(|x| x.parse::<i64>());
    let (Some(Ok(h)), Some(Ok(m)), Some(Ok(sec))) = (p.next(), p.next(), p.next()) else {
        return Err(bad());
    };
    let us = if frac.is_empty() {
        0
    } else {
        if frac.len() > 6 || !frac.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        frac.parse::<i64>().map_err(|_| bad())? * 10_i64.pow(6 - frac.len() as u32)
    };
    Ok((neg, h, m, sec, us))
}

fn time_micros(v: &Value) -> Result<i64, String> {
    let (neg, h, m, s, us) = match v {
        Value::Time(neg, days, h, m, s, us) => (
            *neg,
            i64::from(*days) * 24 + i64::from(*h),
            i64::from(*m),
            i64::from(*s),
            i64::from(*us),
        ),
        Value::Bytes(_) => parse_time(text(v)?)?,
        other => return Err(format!("expected a time, got {other:?}")),
    };
    // Checked: a text value may claim any number of hours.
    let bad = || format!("time out of range: {h}:{m}:{s}");
    if !(0..60).contains(&m) || !(0..62).contains(&s) || !(0..1_000_000).contains(&us) {
        return Err(bad());
    }
    let total = h
        .checked_mul(3_600_000_000)
        .and_then(|x| x.checked_add((m * 60 + s) * 1_000_000 + us))
        .ok_or_else(bad)?;
    Ok(if neg { -total } else { total })
}

impl crate::connectors::ColumnBuilder for Column {
    fn finish(&mut self) -> ArrayRef {
        Column::finish(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Decimal128Type, DurationMicrosecondType, TimestampMicrosecondType};

    fn bytes(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    #[test]
    fn decimals_keep_every_digit() {
        assert_eq!(decimal("-123.45", 2), Ok(-12345));
        assert_eq!(decimal("7", 3), Ok(7000));
        assert_eq!(decimal(".5", 1), Ok(5));
        assert!(decimal("1.234", 2).is_err());
        assert!(decimal("abc", 0).is_err());
        let big = "12345678901234567890123456789012345.123456789012345678901234567890";
        let v = decimal256(big, 30).unwrap();
        assert_eq!(v.to_string(), big.replace('.', ""));
        assert_eq!(decimal256("-1", 0).unwrap(), i256::from_i128(-1));
        let mut c = Column::new(ColType::Decimal(10, 3), 1);
        c.append(bytes("1234567.891")).unwrap();
        let a = c.finish();
        assert_eq!(a.as_primitive::<Decimal128Type>().value(0), 1_234_567_891);
    }

    #[test]
    fn times_may_be_negative_and_longer_than_a_day() {
        assert_eq!(
            time_micros(&Value::Time(true, 34, 22, 59, 59, 0)).unwrap(),
            -((838 * 3600 + 59 * 60 + 59) * 1_000_000)
        );
        assert_eq!(
            time_micros(&bytes("-838:59:59.5")).unwrap(),
            -((838 * 3600 + 59 * 60 + 59) * 1_000_000 + 500_000)
        );
        assert!(time_micros(&bytes("99999999999999999:00:00")).is_err());
        assert!(datetime_micros(&bytes("2024-01-01 99999999999999:00:00")).is_err());
        let mut c = Column::new(ColType::Time, 1);
        c.append(bytes("25:00:00")).unwrap();
        assert_eq!(
            c.finish()
                .as_primitive::<DurationMicrosecondType>()
                .value(0),
            25 * 3600 * 1_000_000
        );
    }

    #[test]
    fn dates_from_both_protocols_and_zero_dates_as_null() {
        let binary = Value::Date(2024, 2, 29, 13, 45, 30, 500_000);
        let text = bytes("2024-02-29 13:45:30.5");
        assert_eq!(datetime_micros(&binary), datetime_micros(&text));
        assert_eq!(
            datetime_micros(&binary).unwrap(),
            Some(1_709_214_330_500_000)
        );
        let mut c = Column::new(ColType::DateTime, 2);
        c.append(Value::Date(0, 0, 0, 0, 0, 0, 0)).unwrap();
        c.append(bytes("1969-12-31 23:59:59")).unwrap();
        let a = c.finish();
        assert!(a.is_null(0));
        assert_eq!(
            a.as_primitive::<TimestampMicrosecondType>().value(1),
            -1_000_000
        );
        let mut d = Column::new(ColType::Date, 1);
        d.append(bytes("1970-01-02")).unwrap();
        assert_eq!(
            d.finish()
                .as_primitive::<arrow::datatypes::Date32Type>()
                .value(0),
            1
        );
    }

    #[test]
    fn integers_check_their_range_and_bits_are_big_endian() {
        let mut c = Column::new(ColType::I8, 1);
        assert!(c.append(Value::Int(200)).is_err());
        c.append(Value::Int(-128)).unwrap();
        let mut u = Column::new(ColType::U64, 2);
        u.append(Value::UInt(u64::MAX)).unwrap();
        u.append(bytes("18446744073709551615")).unwrap();
        let a = u.finish();
        assert_eq!(
            a.as_primitive::<arrow::datatypes::UInt64Type>().value(0),
            u64::MAX
        );
        assert_eq!(
            a.as_primitive::<arrow::datatypes::UInt64Type>().value(1),
            u64::MAX
        );
        let mut bits = Column::new(ColType::Bits, 1);
        bits.append(Value::Bytes(vec![0x01, 0x31])).unwrap();
        let a = bits.finish();
        assert_eq!(
            a.as_primitive::<arrow::datatypes::UInt64Type>().value(0),
            0x0131
        );
        let mut b = Column::new(ColType::Bool, 1);
        b.append(Value::Bytes(vec![1])).unwrap();
        assert!(b.finish().as_boolean().value(0));
    }

    #[test]
    fn sets_become_lists() {
        let mut c = Column::new(ColType::Set, 3);
        c.append(bytes("a,c")).unwrap();
        c.append(bytes("")).unwrap();
        c.append(Value::NULL).unwrap();
        let a = c.finish();
        let l = a.as_list::<i32>();
        assert_eq!(l.value(0).as_string::<i32>().value(1), "c");
        assert_eq!(l.value(1).len(), 0);
        assert!(l.is_null(2));
    }
}
