// Depolarised circuits in the Pauli basis, one circuit per thread, without gradients (hqctf.quantum.pauli).
//
// A circuit's density matrix is held as its 4^n real coefficients on Pauli strings, qubit 0 the most
// significant base-4 digit (0 = I, 1 = X, 2 = Y, 3 = Z). The circuit arrives as passes, planned in Python:
// a pass on one digit applies a 3x3 matrix to the (X, Y, Z) coefficients (one-qubit gates with their
// depolarising factors, composed); a pass on two digits a < b optionally does that on a and on b, then a
// gather of the 16 (a, b) coefficients with a scale each (CNOT or CZ, a signed permutation, times the
// depolarising factors). Every pass is one read and one write of the coefficients; a run of passes on the
// low digits only is applied block by block, so it streams through memory once.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "../parallel.h"

namespace {

constexpr int BLOCK_DIGITS = 7;  // a block of the 7 lowest digits: 4^7 coefficients, in L2
constexpr int64_t W = 16;        // coefficients handled together along the contiguous lower digits

struct Pass {  // as packed by Python: five int32 each
    int32_t a, b;          // digits (b = -1: a one-digit pass); a < b
    int32_t rot_a, rot_b;  // slot of the 3x3 matrix of a, of b (-1: none)
    int32_t gather;        // index of the 16-entry gather table (-1: none)
};

inline int64_t pow4(int k) { return int64_t(1) << (2 * k); }

// (v[1], v[2], v[3]) <- m (v[1], v[2], v[3]) for rows of length w; row k of v at v + k * stride.
template <typename T, int64_t Wc>
inline void rotate_rows(T *v0, T *v1, T *v2, T *v3, const T *m, int64_t w) {
    (void)v0;
    const int64_t len = Wc ? Wc : w;
#pragma omp simd
    for (int64_t l = 0; l < len; ++l) {
        T x = v1[l], y = v2[l], z = v3[l];
        v1[l] = m[0] * x + m[1] * y + m[2] * z;
        v2[l] = m[3] * x + m[4] * y + m[5] * z;
        v3[l] = m[6] * x + m[7] * y + m[8] * z;
    }
}

// One-digit pass on digit a of a block of nl digits, in place.
template <typename T, int64_t Wc>
void one_digit(T *p, int nl, int a, const T *m) {
    const int64_t s = pow4(nl - 1 - a), outer = pow4(a), w = Wc ? Wc : s;
    for (int64_t hi = 0; hi < outer; ++hi)
        for (int64_t lo = 0; lo < s; lo += w) {
            T *base = p + hi * 4 * s + lo;
            rotate_rows<T, Wc>(base, base + s, base + 2 * s, base + 3 * s, m, w);
        }
}

// Two-digit pass on digits a < b of a block of nl digits, in place, through a buffer of 16 rows of w.
template <typename T, int64_t Wc>
void two_digit(T *p, int nl, int a, int b, const T *ma, const T *mb, const int32_t *src, const T *scale) {
    const int64_t sa = pow4(nl - 1 - a), sb = pow4(nl - 1 - b), w = Wc ? Wc : sb;
    const int64_t outer = pow4(a), middle = pow4(b - a - 1);
    T buf[16 * W];
    for (int64_t hi = 0; hi < outer; ++hi)
        for (int64_t mid = 0; mid < middle; ++mid)
            for (int64_t lo = 0; lo < sb; lo += w) {
                T *base = p + hi * 4 * sa + mid * 4 * sb + lo;
                for (int k = 0; k < 16; ++k) std::memcpy(buf + k * W, base + (k >> 2) * sa + (k & 3) * sb, w * sizeof(T));
                if (ma)
                    for (int j = 0; j < 4; ++j)
                        rotate_rows<T, Wc>(buf + j * W, buf + (4 + j) * W, buf + (8 + j) * W, buf + (12 + j) * W, ma, w);
                if (mb)
                    for (int i = 0; i < 4; ++i)
                        rotate_rows<T, Wc>(buf + 4 * i * W, buf + (4 * i + 1) * W, buf + (4 * i + 2) * W,
                                           buf + (4 * i + 3) * W, mb, w);
                if (src)
                    for (int k = 0; k < 16; ++k) {
                        T *out = base + (k >> 2) * sa + (k & 3) * sb;
                        const T *in = buf + src[k] * W;
                        const T c = scale[k];
                        const int64_t len = Wc ? Wc : w;
#pragma omp simd
                        for (int64_t l = 0; l < len; ++l) out[l] = c * in[l];
                    }
                else
                    for (int k = 0; k < 16; ++k) std::memcpy(base + (k >> 2) * sa + (k & 3) * sb, buf + k * W, w * sizeof(T));
            }
}

template <typename T>
void apply(T *p, int nl, const Pass &q, const T *rot, const int32_t *src, const T *scale) {
    const T *ma = q.rot_a >= 0 ? rot + 9 * q.rot_a : nullptr;
    if (q.b < 0) {
        if (pow4(nl - 1 - q.a) >= W) one_digit<T, W>(p, nl, q.a, ma);
        else one_digit<T, 0>(p, nl, q.a, ma);
        return;
    }
    const T *mb = q.rot_b >= 0 ? rot + 9 * q.rot_b : nullptr;
    const int32_t *s = q.gather >= 0 ? src + 16 * q.gather : nullptr;
    const T *c = q.gather >= 0 ? scale + 16 * q.gather : nullptr;
    if (pow4(nl - 1 - q.b) >= W) two_digit<T, W>(p, nl, q.a, q.b, ma, mb, s, c);
    else two_digit<T, 0>(p, nl, q.a, q.b, ma, mb, s, c);
}

template <typename T>
void circuit(T *coeff, int n, int n_passes, const Pass *passes, const T *rot, const int32_t *src, const T *scale,
             T *probs) {
    const int64_t size = pow4(n), dim = int64_t(1) << n;
    std::memset(coeff, 0, size * sizeof(T));
    auto iz = [n](int64_t x) {  // the Pauli string with Z where basis index x has a 1, I elsewhere
        int64_t s = 0;
        for (int q = 0; q < n; ++q) s |= ((x >> (n - 1 - q)) & 1) * (int64_t(3) << (2 * (n - 1 - q)));
        return s;
    };
    const T start = std::ldexp(T(1), -n);  // |0><0| = prod (I + Z) / 2
    for (int64_t x = 0; x < dim; ++x) coeff[iz(x)] = start;
    const int low = n > BLOCK_DIGITS ? n - BLOCK_DIGITS : 0;  // passes on digits >= low run block by block
    for (int i = 0; i < n_passes;) {
        if (passes[i].a < low) {
            apply(coeff, n, passes[i], rot, src, scale);
            ++i;
            continue;
        }
        int j = i;
        while (j < n_passes && passes[j].a >= low) ++j;
        const int nl = n - low;
        for (int64_t block = 0; block < pow4(low); ++block)
            for (int k = i; k < j; ++k) {
                Pass q = passes[k];
                q.a -= low;
                if (q.b >= 0) q.b -= low;
                apply(coeff + block * pow4(nl), nl, q, rot, src, scale);
            }
        i = j;
    }
    for (int64_t x = 0; x < dim; ++x) probs[x] = coeff[iz(x)];
    for (int64_t h = 1; h < dim; h <<= 1)  // p(x) = sum over Z-strings S of c_S (-1)^(x . S)
        for (int64_t i = 0; i < dim; i += 2 * h)
            for (int64_t k = i; k < i + h; ++k) {
                const T u = probs[k], v = probs[k + h];
                probs[k] = u + v;
                probs[k + h] = u - v;
            }
    for (int64_t x = 0; x < dim; ++x) probs[x] = probs[x] > 0 ? probs[x] : T(0);
}

template <typename T>
int run(int64_t batch, int n, int n_passes, const int32_t *passes, int n_rot, const T *rot, const int32_t *src,
        const T *scale, T *probs, int threads) {
    const Pass *ps = reinterpret_cast<const Pass *>(passes);
    return parallel_parts(0, batch, threads, [&](int64_t first, int64_t last, int) {
        if (first == last) return 0;
        T *coeff = static_cast<T *>(std::malloc(pow4(n) * sizeof(T)));
        if (!coeff) return 1;
        for (int64_t c = first; c < last; ++c)
            circuit(coeff, n, n_passes, ps, rot + c * 9 * n_rot, src, scale, probs + (c << n));
        std::free(coeff);
        return 0;
    });
}

}  // namespace

#define HQ_PAULI(T, SUFFIX)                                                                                    \
    extern "C" int hq_pauli_##SUFFIX(int64_t batch, int n, int n_passes, const int32_t *passes, int n_rot,     \
                                     const T *rot, const int32_t *src, const T *scale, T *probs, int threads) { \
        return run<T>(batch, n, n_passes, passes, n_rot, rot, src, scale, probs, threads);                   \
    }
HQ_PAULI(float, f32)
HQ_PAULI(double, f64)
