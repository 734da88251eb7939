/* Products split over persistent workers: see workers.c. */
#ifndef CHATREF_WORKERS_H
#define CHATREF_WORKERS_H

/* Computes output rows [lo, hi) of the product `ctx` describes; 0, or -1 where it failed. */
typedef int (*span_fn)(const void *ctx, int lo, int hi);

/* Rows [0, n) in up to `parts` spans of whole strips of four, span 0 on the caller, the rest on
 * the workers; alone on the caller where the workers are busy with another product, or where n is
 * too small to split. Returns 0, or -1 where any span failed. */
int split_rows(span_fn fn, const void *ctx, int n, int parts);

#endif
