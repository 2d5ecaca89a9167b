// Work splitting shared by hqctf's compiled kernels (included by quantum/ and qpg/ kernels.cpp).
//
// Built with -fopenmp, the parts run on OpenMP threads: torch's own pool when torch is linked to
// libgomp.so.1 (the library is then loaded once), so kernels and torch ops do not compete for the
// CPUs. Built without OpenMP (compilers that lack it), the parts run one after another.
#pragma once

#include <cstdint>

// f(a, b, part) for each part < parts of [first, last) cut into contiguous ranges (a part may be
// empty); returns the OR of f's status codes.
template <typename F>
int parallel_parts(int64_t first, int64_t last, int parts, F f) {
    if (parts <= 1) return f(first, last, 0);
    int status = 0;
#pragma omp parallel for num_threads(parts) schedule(static, 1) reduction(| : status)
    for (int part = 0; part < parts; ++part)
        status |= f(first + (last - first) * part / parts, first + (last - first) * (part + 1) / parts, part);
    return status;
}
