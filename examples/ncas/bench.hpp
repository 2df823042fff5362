#pragma once
// `ncas bench`: throughput measurements (issue "fast CPU"). Same contract as
// the subcommands in commands.hpp.
int run_bench(int argc, char** argv);
