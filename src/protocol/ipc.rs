//! Arrow IPC encoding of schemas and batches for the tunnel.
//!
//! The agent encodes each batch once into an IPC message header and body; the
//! hub forwards both untouched as `FlightData { data_header, data_body }`.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::ipc::CompressionType;
use arrow::ipc::writer::{
    DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions, StreamWriter,
};

use super::pb;

/// Encodes one query's schema and batches.
pub struct IpcEncoder {
    generator: IpcDataGenerator,
    tracker: DictionaryTracker,
    /// Reused compression state (a zstd context is costly to create per batch).
    context: IpcWriteContext,
    options: IpcWriteOptions,
}

impl IpcEncoder {
    pub fn new(compression: pb::Compression) -> Result<Self, ArrowError> {
        let codec = match compression {
            pb::Compression::None => None,
            pb::Compression::Lz4 => Some(CompressionType::LZ4_FRAME),
            pb::Compression::Zstd => Some(CompressionType::ZSTD),
        };
        let options = IpcWriteOptions::default().try_with_compression(codec)?;
        Ok(Self {
            generator: IpcDataGenerator::default(),
            tracker: DictionaryTracker::new(false),
            context: IpcWriteContext::default(),
            options,
        })
    }

    /// The flatbuffer `Message` holding the schema.
    pub fn schema(&mut self, schema: &Schema) -> Vec<u8> {
        self.generator
            .schema_to_bytes_with_dictionary_tracker(schema, &mut self.tracker, &self.options)
            .ipc_message
    }

    /// Header and body of a record batch message. Connectors never produce
    /// dictionary-encoded columns, so no dictionary messages come out.
    pub fn batch(&mut self, batch: &RecordBatch) -> Result<(Vec<u8>, Vec<u8>), ArrowError> {
        let (dicts, data) =
            self.generator
                .encode(batch, &mut self.tracker, &self.options, &mut self.context)?;
        if !dicts.is_empty() {
            return Err(ArrowError::NotYetImplemented(
                "dictionary-encoded columns cannot cross the tunnel".into(),
            ));
        }
        Ok((data.ipc_message, data.arrow_data))
    }
}

/// Decodes a schema sent as a flatbuffer `Message`.
pub fn decode_schema(bytes: &[u8]) -> Result<SchemaRef, ArrowError> {
    Ok(Arc::new(
        arrow::ipc::convert::try_schema_from_flatbuffer_bytes(bytes)?,
    ))
}

/// Writes batches as a complete Arrow IPC stream (used for bound parameters).
pub fn write_stream(schema: &Schema, batches: &[RecordBatch]) -> Result<Vec<u8>, ArrowError> {
    let mut out = Vec::new();
    {
        let mut w = StreamWriter::try_new(&mut out, schema)?;
        for b in batches {
            w.write(b)?;
        }
        w.finish()?;
    }
    Ok(out)
}

/// Reads a complete Arrow IPC stream (bound parameters) into memory.
pub fn read_stream(bytes: &[u8]) -> Result<Vec<RecordBatch>, ArrowError> {
    let reader = arrow::ipc::reader::StreamReader::try_new(bytes, None)?;
    reader.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field};

    #[test]
    fn params_round_trip() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![Some(7)])),
                Arc::new(StringArray::from(vec![None::<&str>])),
            ],
        )
        .unwrap();
        let bytes = write_stream(&schema, std::slice::from_ref(&batch)).unwrap();
        assert_eq!(read_stream(&bytes).unwrap(), vec![batch]);
        assert!(read_stream(b"not arrow").is_err());
    }

    #[test]
    fn schema_round_trip_and_compressed_batches() {
        let schema = Schema::new(vec![Field::new("a", DataType::Int64, false)]);
        for c in [
            pb::Compression::None,
            pb::Compression::Lz4,
            pb::Compression::Zstd,
        ] {
            let mut enc = IpcEncoder::new(c).unwrap();
            let bytes = enc.schema(&schema);
            assert_eq!(decode_schema(&bytes).unwrap().as_ref(), &schema);
            let batch = RecordBatch::try_new(
                Arc::new(schema.clone()),
                vec![Arc::new(Int64Array::from_iter_values(0..10_000))],
            )
            .unwrap();
            let (header, body) = enc.batch(&batch).unwrap();
            assert!(!header.is_empty());
            if c == pb::Compression::None {
                assert!(body.len() >= 80_000);
            } else {
                assert!(
                    body.len() < 60_000,
                    "{c:?} did not compress: {}",
                    body.len()
                );
            }
        }
        assert!(decode_schema(b"junk").is_err());
    }
}
