/* int8-weight products in integers (AVX2, with AVX-VNNI where the compiler has it).
 *
 * Weights come in blocks of 32 int8 values with one fp16 scale each, as in llama.cpp's Q8_0.
 * Activations are quantized here, per call, in blocks of 32 too, but to int16 (one float scale
 * each): int8 activations, as Q8_0 pairs them, cost the default model 4x the weights' own error
 * (docs/perf.md, "int8 products in integers"). Each block is an integer dot product (vpdpwssd, or
 * vpmaddwd), scaled and accumulated in float. A large product can split its output rows over
 * workers of this file's own (q8_matmul_split), no Python or OpenMP runtime in between. Built at
 * first use with -march=native by reference/kernels/q8.py; no torch headers.
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define STRIPS_AHEAD 2 /* prefetch the strip this many strips ahead: 1-4 measured within 10% */

/* x [m, k] float -> xq [m, k] int16 and xs [m, k/32] float (k a multiple of 32). */
static void quantize_rows(const float *x, int m, int k, int16_t *xq, float *xs) {
  const int nb = k / 32;
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int r = 0; r < m; r++)
    for (int b = 0; b < nb; b++) {
      const float *p = x + (long)r * k + b * 32;
      __m256 mx = _mm256_setzero_ps();
      for (int j = 0; j < 32; j += 8) mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, _mm256_loadu_ps(p + j)));
      __m128 h = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
      h = _mm_max_ps(h, _mm_movehl_ps(h, h));
      h = _mm_max_ss(h, _mm_movehdup_ps(h));
      const float amax = _mm_cvtss_f32(h);
      xs[r * nb + b] = amax / 32767.0f;
      const __m256 inv = _mm256_set1_ps(amax > 0.0f ? 32767.0f / amax : 0.0f);
      __m256i q[4];
      for (int j = 0; j < 4; j++)
        q[j] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(p + 8 * j), inv),
                                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      /* packs interleave 128-bit lanes; the permute restores element order */
      const __m256i order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
      __m256i lo = _mm256_permutevar8x32_epi32(_mm256_packs_epi32(q[0], q[1]), order);
      __m256i hi = _mm256_permutevar8x32_epi32(_mm256_packs_epi32(q[2], q[3]), order);
      _mm256_storeu_si256((__m256i *)(xq + (long)r * k + b * 32), lo);
      _mm256_storeu_si256((__m256i *)(xq + (long)r * k + b * 32 + 16), hi);
    }
}

/* sum over 32 of x (int16, two registers) times w (int16, two registers), as 8 int32 lanes */
static inline __m256i dot16(__m256i xlo, __m256i xhi, __m256i wlo, __m256i whi) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpwssd_epi32(_mm256_madd_epi16(xlo, wlo), xhi, whi);
#elif defined(__AVXVNNI__)
  return _mm256_dpwssd_avx_epi32(_mm256_madd_epi16(xlo, wlo), xhi, whi);
#else
  return _mm256_add_epi32(_mm256_madd_epi16(xlo, wlo), _mm256_madd_epi16(xhi, whi));
#endif
}

/* the same with w as 32 int8 in one register, widened here (two input rows widen once: q8_rows) */
static inline __m256i dot32(__m256i xlo, __m256i xhi, __m256i w) {
  return dot16(xlo, xhi, _mm256_cvtepi8_epi16(_mm256_castsi256_si128(w)),
               _mm256_cvtepi8_epi16(_mm256_extracti128_si256(w, 1)));
}

static inline float hsum(__m256 v) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

static inline __m256i load(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* Four rows' block scales [4][nb], fp16 in memory, as floats (once per strip, not per input row). */
static void strip_scales(const uint16_t *ws, int nb, float *out) {
  int i = 0;
  for (; i + 8 <= 4 * nb; i += 8)
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(ws + i))));
  for (; i < 4 * nb; i++) out[i] = _cvtsh_ss(ws[i]);
}

/* The same 64 bytes of the four rows STRIPS_AHEAD strips on: every other block of the strip. */
static inline void prefetch_ahead(const int8_t *w0, int k, int b) {
  const char *next = (const char *)(w0 + 4L * STRIPS_AHEAD * k + b * 32);
  _mm_prefetch(next, _MM_HINT_T0);
  _mm_prefetch(next + k, _MM_HINT_T0);
  _mm_prefetch(next + 2L * k, _MM_HINT_T0);
  _mm_prefetch(next + 3L * k, _MM_HINT_T0);
}

/* y[r, n] (row stride ldy) = sum_b xs[r, b] * ws[n, b] * dot(xq[r, b], w[n, b]) for n in [n0, n1),
 * ws [n, k/32] fp16. Four weight rows at a time: each strip is read from memory once and from L1
 * for the other input rows, which go two at a time so that each weight block is widened once for
 * both (1.25-1.6x at 2-8 rows). Returns 0, or -1 where scratch memory could not be allocated. */
static int q8_rows(const int16_t *xq, const float *xs, int m, int k, const int8_t *w, const uint16_t *ws,
            int n0, int n1, float *y, long ldy) {
  const int nb = k / 32;
  float *sw = malloc(sizeof(float) * 4 * (size_t)nb);
  if (!sw) return -1;
  int n = n0;
  for (; n + 4 <= n1; n += 4) {
    const int8_t *w0 = w + (long)n * k;
    strip_scales(ws + (long)n * nb, nb, sw);
    const int ahead = n + 4 * (STRIPS_AHEAD + 1) <= n1;
    int r = 0;
    for (; r + 2 <= m; r += 2) { /* two input rows at a time: each weight block widened once */
      __m256 a[4], c[4];
      for (int j = 0; j < 4; j++) a[j] = c[j] = _mm256_setzero_ps();
      const int16_t *x0 = xq + (long)r * k, *x1 = x0 + k;
      const float *s0 = xs + r * nb, *s1 = s0 + nb;
      for (int b = 0; b < nb; b++) {
        if (r == 0 && (b & 1) == 0 && ahead) prefetch_ahead(w0, k, b);
        const __m256i x0lo = load(x0 + b * 32), x0hi = load(x0 + b * 32 + 16);
        const __m256i x1lo = load(x1 + b * 32), x1hi = load(x1 + b * 32 + 16);
        for (int j = 0; j < 4; j++) {
          const __m256i wv = load(w0 + j * (long)k + b * 32);
          const __m256i wlo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(wv));
          const __m256i whi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(wv, 1));
          const float sj = sw[j * nb + b];
          a[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot16(x0lo, x0hi, wlo, whi)), _mm256_set1_ps(s0[b] * sj), a[j]);
          c[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot16(x1lo, x1hi, wlo, whi)), _mm256_set1_ps(s1[b] * sj), c[j]);
        }
      }
      for (int j = 0; j < 4; j++) {
        y[r * ldy + n + j] = hsum(a[j]);
        y[(r + 1) * ldy + n + j] = hsum(c[j]);
      }
    }
    for (; r < m; r++) {
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      const int16_t *xr = xq + (long)r * k;
      const float *sr = xs + r * nb;
      for (int b = 0; b < nb; b++) {
        if (r == 0 && (b & 1) == 0 && ahead) prefetch_ahead(w0, k, b);
        const __m256i xlo = load(xr + b * 32), xhi = load(xr + b * 32 + 16);
        const float s = sr[b];
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot32(xlo, xhi, load(w0 + b * 32))), _mm256_set1_ps(s * sw[b]), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot32(xlo, xhi, load(w0 + k + b * 32))),
                             _mm256_set1_ps(s * sw[nb + b]), a1);
        a2 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot32(xlo, xhi, load(w0 + 2L * k + b * 32))),
                             _mm256_set1_ps(s * sw[2 * nb + b]), a2);
        a3 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot32(xlo, xhi, load(w0 + 3L * k + b * 32))),
                             _mm256_set1_ps(s * sw[3 * nb + b]), a3);
      }
      float *yr = y + r * ldy;
      yr[n] = hsum(a0);
      yr[n + 1] = hsum(a1);
      yr[n + 2] = hsum(a2);
      yr[n + 3] = hsum(a3);
    }
  }
  for (; n < n1; n++) {
    const int8_t *w0 = w + (long)n * k;
    for (int r = 0; r < m; r++) {
      __m256 a = _mm256_setzero_ps();
      const int16_t *xr = xq + (long)r * k;
      for (int b = 0; b < nb; b++) {
        const __m256i d = dot32(load(xr + b * 32), load(xr + b * 32 + 16), load(w0 + b * 32));
        const float s = xs[r * nb + b] * _cvtsh_ss(ws[(long)n * nb + b]);
        a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_set1_ps(s), a);
      }
      y[r * ldy + n] = hsum(a);
    }
  }
  free(sw);
  return 0;
}

/* x's rows quantized into fresh scratch, *xq and *xs, which the caller frees; -1 where memory ran out. */
static int quantized(const float *x, int m, int k, int16_t **xq, float **xs) {
  *xq = malloc(sizeof(int16_t) * (size_t)m * k);
  *xs = malloc(sizeof(float) * (size_t)m * (k / 32));
  if (!*xq || !*xs) {
    free(*xq);
    free(*xs);
    return -1;
  }
  quantize_rows(x, m, k, *xq, *xs);
  return 0;
}

/* The whole product on the calling thread, its scratch its own: one foreign call per product.
 * Like q8_rows, returns 0, or -1 where scratch memory could not be allocated. */
int q8_matmul(const float *x, int m, int k, const int8_t *w, const uint16_t *ws, int n, float *y) {
  int16_t *xq;
  float *xs;
  if (quantized(x, m, k, &xq, &xs)) return -1;
  const int failed = q8_rows(xq, xs, m, k, w, ws, 0, n, y, n);
  free(xq);
  free(xs);
  return failed;
}

/* ---- one product split over persistent workers (q8_matmul_split) ----
 * A product's output rows split into `parts` spans, span 0 on the caller and the rest on workers
 * created at first use. A worker that finds no job spins for SPIN_NS, then sleeps on a condition
 * variable: a decode step's next product usually comes within that, and a machine busy with other
 * processes loses at most that much of a core per product. One product at a time: a second caller
 * that finds the workers busy does its product alone, never waits for another's. */

#define MAX_PARTS 16
#define SPIN_NS 20000L

static pthread_mutex_t call_mu = PTHREAD_MUTEX_INITIALIZER; /* held for a whole split product */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;      /* guards sleeping on the two below */
static pthread_cond_t job_cv = PTHREAD_COND_INITIALIZER, done_cv = PTHREAD_COND_INITIALIZER;
static atomic_uint generation;      /* bumped once per job */
static atomic_int pending, failures; /* workers yet to finish this job; spans that failed */
static int workers;                 /* started (and never stopped: they sleep) */
static struct {
  const int16_t *xq;
  const float *xs;
  int m, k;
  const int8_t *w;
  const uint16_t *ws;
  float *y;
  long ldy;
  int lo[MAX_PARTS], hi[MAX_PARTS], parts;
} job;

static long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000L + t.tv_nsec;
}

/* Spin until `ready` says so or SPIN_NS pass; then whether it did. */
static int spin_until(int (*ready)(unsigned), unsigned arg) {
  const long end = now_ns() + SPIN_NS;
  for (;;) {
    for (int i = 0; i < 64; i++) {
      if (ready(arg)) return 1;
      _mm_pause();
    }
    if (now_ns() > end) return ready(arg);
  }
}

static int job_after(unsigned seen) { return atomic_load_explicit(&generation, memory_order_acquire) != seen; }
static int all_done(unsigned unused) { (void)unused; return atomic_load_explicit(&pending, memory_order_acquire) == 0; }

/* arg: the worker's span in its low byte, above it the generation it was started at (before the
 * job that started it: a worker that runs late must still see that job as new) */
static void *worker(void *arg) {
  const int part = (int)((long)arg & 0xff);
  unsigned seen = (unsigned)((long)arg >> 8);
  for (;;) {
    if (!spin_until(job_after, seen)) {
      pthread_mutex_lock(&mu);
      while (!job_after(seen)) pthread_cond_wait(&job_cv, &mu);
      pthread_mutex_unlock(&mu);
    }
    seen = atomic_load_explicit(&generation, memory_order_acquire);
    if (part < job.parts &&
        q8_rows(job.xq, job.xs, job.m, job.k, job.w, job.ws, job.lo[part], job.hi[part], job.y, job.ldy))
      atomic_fetch_add(&failures, 1);
    if (atomic_fetch_sub_explicit(&pending, 1, memory_order_acq_rel) == 1) {
      pthread_mutex_lock(&mu);
      pthread_cond_signal(&done_cv);
      pthread_mutex_unlock(&mu);
    }
  }
  return NULL;
}

/* A child of fork() has none of the parent's workers, nor any of its other threads' locks. */
static void forget_workers(void) {
  workers = 0;
  pthread_mutex_init(&call_mu, NULL);
  pthread_mutex_init(&mu, NULL);
  pthread_cond_init(&job_cv, NULL);
  pthread_cond_init(&done_cv, NULL);
}

static int start_workers(int wanted) {
  static int hooked;
  if (!hooked) hooked = pthread_atfork(NULL, NULL, forget_workers) == 0;
  while (workers < wanted) {
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    const long arg = (long)atomic_load(&generation) << 8 | (workers + 1);
    const int failed = pthread_create(&t, &attr, worker, (void *)arg);
    pthread_attr_destroy(&attr);
    if (failed) break;
    workers++;
  }
  return workers;
}

/* y [m, n] = x [m, k] times the weight, as q8_matmul, the output rows split over `parts` threads
 * (the caller one of them), in spans of whole strips of four. Returns 0, or -1 where scratch
 * memory could not be allocated. */
int q8_matmul_split(const float *x, int m, int k, const int8_t *w, const uint16_t *ws, int n, float *y,
                    int parts) {
  if (parts > MAX_PARTS) parts = MAX_PARTS;
  if (parts <= 1 || n < 8 * parts || pthread_mutex_trylock(&call_mu) != 0)
    return q8_matmul(x, m, k, w, ws, n, y);
  const int helpers = start_workers(parts - 1);
  int16_t *xq;
  float *xs;
  if (helpers == 0 || quantized(x, m, k, &xq, &xs)) {
    pthread_mutex_unlock(&call_mu);
    return helpers == 0 ? q8_matmul(x, m, k, w, ws, n, y) : -1;
  }
  job.xq = xq, job.xs = xs, job.m = m, job.k = k, job.w = w, job.ws = ws, job.y = y, job.ldy = n;
  const int spans = helpers + 1 < parts ? helpers + 1 : parts;
  const int width = ((n + spans - 1) / spans + 3) / 4 * 4; /* whole strips of four rows */
  job.parts = 0;
  for (int lo = 0; lo < n; lo += width, job.parts++) {
    job.lo[job.parts] = lo;
    job.hi[job.parts] = lo + width < n ? lo + width : n;
  }
  atomic_store(&failures, 0);
  atomic_store(&pending, workers);
  pthread_mutex_lock(&mu);
  atomic_fetch_add_explicit(&generation, 1, memory_order_release);
  pthread_cond_broadcast(&job_cv);
  pthread_mutex_unlock(&mu);
  int failed = q8_rows(xq, xs, m, k, w, ws, job.lo[0], job.hi[0], y, n);
  if (!spin_until(all_done, 0)) {
    pthread_mutex_lock(&mu);
    while (!all_done(0)) pthread_cond_wait(&done_cv, &mu);
    pthread_mutex_unlock(&mu);
  }
  failed |= atomic_load(&failures) != 0;
  free(xq);
  free(xs);
  pthread_mutex_unlock(&call_mu);
  return failed ? -1 : 0;
}
