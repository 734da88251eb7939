/* fp32 products of a few rows (a decode step's) on the CPU: AVX-512, or AVX2 and FMA.
 *
 * A one-row product is a read of the weight: each thread streams it at what one core can read
 * (16-18 GB/s on the 2-core Xeon measured), so the product splits its output rows over the
 * workers of workers.c, and a step's small products (1-7 MB) split at about two cores' speed
 * where OpenMP's sleeping threads must each be woken first (docs/perf.md, "fp32 products on the
 * kernel's workers"). Four weight rows at a time, each read from memory once for every input row.
 * Built at first use with -march=native by reference/kernels/native.py; no torch headers.
 */
#include <immintrin.h>

#include "workers.h"

struct f32_job {
  const float *x, *w;
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
#endif

/* The next strip's line at float offset i of each of its four rows, while this strip is read:
 * 5-15% more bandwidth than the hardware's prefetchers alone (two or three strips ahead: less). */
static inline void prefetch_next(const float *w0, int k, int i) {
  for (int q = 4; q < 8; q++) _mm_prefetch((const char *)(w0 + (long)q * k + i), _MM_HINT_T0);
}

/* y[r, n] = sum_i x[r, i] * w[n, i] for n in [lo, hi) and every input row r: the weight's rows
 * four at a time, each strip read from memory once and from cache for the other input rows */
static int f32_span(const void *ctx, int lo, int hi) {
  const struct f32_job *j = ctx;
  const int k = j->k;
  int n = lo;
  for (; n + 4 <= hi; n += 4) {
    const float *w0 = j->w + (long)n * k, *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k;
    const int ahead = n + 8 <= hi;
    for (int r = 0; r < j->m; r++) {
      const float *x = j->x + (long)r * k;
      vec a0 = vzero(), a1 = a0, a2 = a0, a3 = a0;
      int i = 0;
      for (; i + WIDTH <= k; i += WIDTH) {
        if (r == 0 && ahead && i % 16 == 0) prefetch_next(w0, k, i);
        const vec xv = vload(x + i);
        a0 = vfmadd(xv, vload(w0 + i), a0);
        a1 = vfmadd(xv, vload(w1 + i), a1);
        a2 = vfmadd(xv, vload(w2 + i), a2);
        a3 = vfmadd(xv, vload(w3 + i), a3);
      }
      float s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
      for (; i < k; i++) s0 += x[i] * w0[i], s1 += x[i] * w1[i], s2 += x[i] * w2[i], s3 += x[i] * w3[i];
      float *y = j->y + (long)r * j->n_out + n;
      y[0] = s0, y[1] = s1, y[2] = s2, y[3] = s3;
    }
  }
  for (; n < hi; n++)
    for (int r = 0; r < j->m; r++) {
      const float *x = j->x + (long)r * k, *w0 = j->w + (long)n * k;
      float s = 0.0f;
      for (int i = 0; i < k; i++) s += x[i] * w0[i];
      j->y[(long)r * j->n_out + n] = s;
    }
  return 0;
}

/* y [m, n] = x [m, k] times w [n, k] transposed, the output rows split over `parts` threads
 * (the caller one of them; 1: the caller alone). Returns 0. */
int f32_matmul(const float *x, int m, int k, const float *w, int n, float *y, int parts) {
  const struct f32_job job = {x, w, m, k, y, n};
  return split_rows(f32_span, &job, n, parts);
}
