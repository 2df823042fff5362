#pragma once
// The message of the ncas::error that f throws; "(no error)" when it throws
// none, and a marked text when it throws another exception type (ncas reports
// bad input with ncas::error and nothing else).
#include <exception>
#include <string>

#include "ncas/error.hpp"

namespace test_errors {

template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const ncas::error& e) {
        return e.what();
    } catch (const std::exception& e) {
        return std::string("WRONG EXCEPTION TYPE: ") + e.what();
    }
    return "(no error)";
}

}  // namespace test_errors

// Expects the text `text` in the message `msg`.
#define EXPECT_HAS(msg, text)                                                                       \
    do {                                                                                            \
        const std::string m_ = (msg);                                                               \
        EXPECT_NE(m_.find(text), std::string::npos) << "message was: " << m_;                     \
    } while (0)
