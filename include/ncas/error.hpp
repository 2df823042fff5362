#pragma once
// One exception type for every failure the library reports. The message names
// the file, key, tensor or argument at fault, so callers can show it as is.
#include <stdexcept>
#include <string>

namespace ncas {

struct error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

}  // namespace ncas
