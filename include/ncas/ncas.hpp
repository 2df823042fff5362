#pragma once
// ncas: header-only inference for NCAS-DiffMoE (and llama-architecture) models.
#include "ncas/config.hpp"
#include "ncas/error.hpp"
#include "ncas/format/gguf.hpp"
#include "ncas/format/quant.hpp"
#include "ncas/model/model.hpp"
#include "ncas/session.hpp"
#include "ncas/text/sampler.hpp"
#include "ncas/text/tokenizer.hpp"
#include "ncas/text/vocab.hpp"
