// lamina/io/gguf.hpp — GGUF files: reading (zero copy, from a memory mapping) and writing.
//
// File layout (GGUF v2/v3, all little-endian):
//   "GGUF" u32 version, u64 tensor_count, u64 metadata_kv_count
//   metadata_kv_count × { string key, u32 value_type, value }
//   tensor_count × { string name, u32 n_dims, u64 dims[n_dims] (innermost first), u32 type, u64 offset }
//   padding to general.alignment (default 32), then the tensor data; each offset is relative
//   to the start of the data section and a multiple of the alignment.
// A string is u64 length + bytes (no terminator); an array is u32 element type, u64 count, elements.
//
// Reading never trusts the file: every count and length is checked against the bytes that are
// left before anything is allocated, arrays may nest at most 8 deep, and every tensor must lie
// inside the file without overlapping another. A bad file gives an Error that names the file,
// the key or tensor, the byte offset and what is wrong; it never aborts or reads out of bounds.
//
//   lamina::Result<lamina::gguf::File> file = lamina::gguf::File::open("model.gguf");
//   if (!file) return file.take_error();
//   lamina::Result<std::uint32_t> layers = file->get_u32("llama.block_count");
//   const lamina::gguf::TensorInfo* embedding = file->find_tensor("token_embd.weight");
//   // embedding->shape == {n_vocab, n_embd}; embedding->data points into the mapping.
//
// The parts, each usable on its own:
//   gguf_value.hpp   ValueType and Value (metadata values), the limits, the shared encoding
//   gguf_reader.hpp  File (parsed from a mapping or from bytes) and TensorInfo
//   gguf_writer.hpp  Writer (a whole file in memory, written atomically)
// (gguf_stream.hpp, not included here, writes a file tensor by tensor.)
#pragma once

#include "../config.hpp"
#include "gguf_reader.hpp"
#include "gguf_value.hpp"
#include "gguf_writer.hpp"
