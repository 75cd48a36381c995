export { createDecoder, type Decoder, type DecoderContext } from "./decoder.ts";
export {
  type AvroEncoderOptions,
  type AvroRecordEncoder,
  type ClipRecordFields,
  clipRecordSchema,
  createAvroEncoder,
  encodeJsonRecord,
  type JsonEncodeOptions,
} from "./encode.ts";
export {
  BYTES_PER_VALUE,
  EMBEDDING_DTYPES,
  type EmbeddingDtype,
  floatsFromBytes,
  floatsToBytes,
} from "./float-bytes.ts";
export {
  DECODER_DEFAULTS,
  type DecoderOptions,
  type RecordFormat,
  type ResolvedDecoderOptions,
  resolveDecoderOptions,
} from "./options.ts";
