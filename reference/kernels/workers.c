/* One product's output rows split over persistent workers (split_rows), for the products of
 * q8_matmul.c and f32_matmul.c: no Python or OpenMP runtime in between.
 *
 * Workers are created at first use and never stopped. A worker that finds no job spins for SPIN_NS,
 * then sleeps on a condition variable: a decode step's next product usually comes within that,
 * and a machine busy with other processes loses at most that much of a core per product. One
 * product at a time: a second caller that finds the workers busy does its product alone, never
 * waits for another's. A forked child starts workers of its own. Knows nothing of what a product
 * computes: a span is a function and its argument.
 */
#include "workers.h"

#include <immintrin.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define MAX_PARTS 16
#define SPIN_NS 20000L

static pthread_mutex_t call_mu = PTHREAD_MUTEX_INITIALIZER; /* held for a whole split product */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;      /* guards sleeping on the two below */
static pthread_cond_t job_cv = PTHREAD_COND_INITIALIZER, done_cv = PTHREAD_COND_INITIALIZER;
static atomic_uint generation;      /* bumped once per job */
static atomic_int pending, failures; /* workers yet to finish this job; spans that failed */
static int workers;                 /* started (and never stopped: they sleep) */
static struct {
  span_fn fn;
  const void *ctx;
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
    if (part < job.parts && job.fn(job.ctx, job.lo[part], job.hi[part])) atomic_fetch_add(&failures, 1);
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

int split_rows(span_fn fn, const void *ctx, int n, int parts) {
  if (parts > MAX_PARTS) parts = MAX_PARTS;
  if (parts <= 1 || n < 8 * parts || pthread_mutex_trylock(&call_mu) != 0) return fn(ctx, 0, n);
  const int helpers = start_workers(parts - 1);
  if (helpers == 0) {
    pthread_mutex_unlock(&call_mu);
    return fn(ctx, 0, n);
  }
  job.fn = fn, job.ctx = ctx;
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
  int failed = fn(ctx, job.lo[0], job.hi[0]);
  if (!spin_until(all_done, 0)) {
    pthread_mutex_lock(&mu);
    while (!all_done(0)) pthread_cond_wait(&done_cv, &mu);
    pthread_mutex_unlock(&mu);
  }
  failed |= atomic_load(&failures) != 0;
  pthread_mutex_unlock(&call_mu);
  return failed ? -1 : 0;
}
