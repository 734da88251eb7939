/* Float products of a few rows (a decode step's) on the CPU: fp32 activations times fp32 or bf16
 * weights, accumulated in fp32; AVX-512, or AVX2 and FMA.
 *
 * A one-row product is a read of the weight: each thread streams it at what one core can read
 * (16-18 GB/s on the 2-core Xeon measured), so the product splits its output rows over the
 * workers of workers.c, and a step's small products (1-7 MB) split at about two cores' speed
 * where OpenMP's sleeping threads must each be woken first (docs/perf.md, "fp32 products on the
 * kernel's workers"). Four weight rows at a time, each read from memory once for every input row;
 * a bf16 weight is widened in registers (its 16 bits are a float's upper half), so each product
 * is exact and the sums are fp32's. Built at first use with -march=native by
 * reference/kernels/native.py; no torch headers.
 */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "workers.h"

struct job {
  const float *x;
  const void *w; /* [n, k] float or bf16 */
  int m, k;
  float *y;
  int n_out; /* y's row width */
};

#if defined(__AVX512F__) /* 3-5% over AVX2 on the Xeon measured */
typedef __m512 vec;
#define WIDTH 16
#define vload _mm512_loadu_ps
#define vzero _mm512_setzero_ps
#define vfmadd _mm512_fmadd_ps
static inline float hsum(vec v) { return _mm512_reduce_add_ps(v); }
static inline vec widen(const uint16_t *p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}
#else
typedef __m256 vec;
#define WIDTH 8
#define vload _mm256_loadu_ps
#define vzero _mm256_setzero_ps
#define vfmadd _mm256_fmadd_ps
static inline float hsum(vec v) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}
static inline vec widen(const uint16_t *p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}
#endif

static inline float bf16_value(uint16_t h) {
  const uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

/* WIDTH weights from element i of row w (float, or bf16 where `half`) */
static inline vec wload(const void *w, long i, int half) {
  return half ? widen((const uint16_t *)w + i) : vload((const float *)w + i);
}

static inline float wvalue(const void *w, long i, int half) {
  return half ? bf16_value(((const uint16_t *)w)[i]) : ((const float *)w)[i];
}

/* The next strip's line at byte `at` of each of its four rows, while this strip is read: 5-15%
 * more bandwidth than the hardware's prefetchers alone (two or three strips ahead: less). Always
 * inlined: GCC 12 dropped the prefetches altogether when it left this a call inside span(). */
static inline __attribute__((always_inline)) void prefetch_next(const char *w0, long row_bytes, long at) {
  for (int q = 4; q < 8; q++) _mm_prefetch(w0 + q * row_bytes + at, _MM_HINT_T0);
}

/* y[r, n] = sum_i x[r, i] * w[n, i] for n in [lo, hi) and every input row r: the weight's rows
 * four at a time, each strip read from memory once and from cache for the other input rows */
static inline __attribute__((always_inline)) int span(const struct job *j, int lo, int hi, const int half) {
  const int k = j->k;
  const long size = half ? 2 : 4, row_bytes = k * size;
  int n = lo;
  for (; n + 4 <= hi; n += 4) {
    const char *w0 = (const char *)j->w + n * row_bytes, *w1 = w0 + row_bytes;
    const char *w2 = w1 + row_bytes, *w3 = w2 + row_bytes;
    const int ahead = n + 8 <= hi;
    for (int r = 0; r < j->m; r++) {
      const float *x = j->x + (long)r * k;
      vec a0 = vzero(), a1 = a0, a2 = a0, a3 = a0;
      int i = 0;
      for (; i + WIDTH <= k; i += WIDTH) {
        if (r == 0 && ahead && (i * size) % 64 == 0) prefetch_next(w0, row_bytes, i * size);
        const vec xv = vload(x + i);
        a0 = vfmadd(xv, wload(w0, i, half), a0);
        a1 = vfmadd(xv, wload(w1, i, half), a1);
        a2 = vfmadd(xv, wload(w2, i, half), a2);
        a3 = vfmadd(xv, wload(w3, i, half), a3);
      }
      float s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
      for (; i < k; i++) {
        s0 += x[i] * wvalue(w0, i, half), s1 += x[i] * wvalue(w1, i, half);
        s2 += x[i] * wvalue(w2, i, half), s3 += x[i] * wvalue(w3, i, half);
      }
      float *y = j->y + (long)r * j->n_out + n;
      y[0] = s0, y[1] = s1, y[2] = s2, y[3] = s3;
    }
  }
  for (; n < hi; n++)
    for (int r = 0; r < j->m; r++) {
      const float *x = j->x + (long)r * k;
      const char *w0 = (const char *)j->w + n * row_bytes;
      float s = 0.0f;
      for (int i = 0; i < k; i++) s += x[i] * wvalue(w0, i, half);
      j->y[(long)r * j->n_out + n] = s;
    }
  return 0;
}

static int f32_span(const void *ctx, int lo, int hi) { return span(ctx, lo, hi, 0); }
static int bf16_span(const void *ctx, int lo, int hi) { return span(ctx, lo, hi, 1); }

/* y [m, n] = x [m, k] times w [n, k] transposed, w fp32 (f32_matmul) or bf16 (bf16w_matmul), the
 * output rows split over `parts` threads (the caller one of them; 1: the caller alone). Returns 0. */
int f32_matmul(const float *x, int m, int k, const float *w, int n, float *y, int parts) {
  const struct job job = {x, w, m, k, y, n};
  return split_rows(f32_span, &job, n, parts);
}

int bf16w_matmul(const float *x, int m, int k, const uint16_t *w, int n, float *y, int parts) {
  const struct job job = {x, w, m, k, y, n};
  return split_rows(bf16_span, &job, n, parts);
}
