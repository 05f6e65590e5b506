// lamina/lamina.hpp — the one include: everything lamina offers on the CPU.
//
//   #include <lamina/lamina.hpp>
//
// Modules (each usable on its own):
//   core/     Result and Error, dtypes, F16/BF16, tensor views, memory mapping, executors
//   io/       GGUF reading and writing
//   quant/    GGML block types: scalar reference quantize / dequantize
//   kernels/  the scalar reference of every op, and the CPU kernels
//   model/    hyperparameters, KV cache, the Llama-family forward pass
//   text/     tokenizers (SentencePiece-style and byte-level BPE) and sampling
//   adapters/ LoRA adapters: GGUF loading, per-sequence stacks, merging (PEFT directories:
//             <lamina/adapters/peft.hpp>, which needs nlohmann/json)
//   session   Model (shared, immutable) and Session (KV cache + sampler, one step per call)
//   generate  the generation loop: generate(), with streaming and stop strings
#pragma once

#include "config.hpp"

#include "core/dtype.hpp"
#include "core/executor.hpp"
#include "core/file_io.hpp"
#include "core/half.hpp"
#include "core/mapped_file.hpp"
#include "core/random.hpp"
#include "core/result.hpp"
#include "core/tensor.hpp"

#include "io/gguf.hpp"

#include "kernels/cpu/arch.hpp"
#include "kernels/cpu/dispatch.hpp"
#include "kernels/cpu/kernels.hpp"
#include "kernels/cpu/matmul.hpp"
#include "kernels/reference.hpp"

#include "quant/quant.hpp"

#include "model/hparams.hpp"
#include "model/kv_cache.hpp"
#include "model/llama.hpp"
#include "model/model.hpp"
#include "model/projection.hpp"

#include "adapters/lora.hpp"
#include "adapters/lora_load.hpp"

#include "text/sampler.hpp"
#include "text/tokenizer.hpp"

#include "session.hpp"
#include "generate.hpp"
