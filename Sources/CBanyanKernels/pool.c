// Persistent worker pool: a call publishes (fn, context, count) under a new generation number;
// workers spin briefly on the generation (decode issues ~10 calls per layer, so waking must cost
// microseconds), then sleep on a condition variable. Indices are claimed from one atomic word that
// packs (generation, next index), and the caller waits for the *indices* to be done, not for the
// workers: on a shared machine a descheduled worker that claimed nothing never delays a call (it
// wakes later, finds the word belongs to another generation, and goes back to waiting).
#define _GNU_SOURCE
#include "CBanyanKernels.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ volatile("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

// How long an idle thread spins before blocking.
#define SPIN_NANOS 50000L
#define CLOSED 0xFFFFFFFFu

struct banyan_pool {
    int worker_count;
    pthread_t *threads;
    pthread_mutex_t mutex;
    pthread_cond_t work_cv;
    pthread_cond_t done_cv;
    _Atomic unsigned long generation;
    _Atomic int sleepers;       // workers blocked (or about to block) on work_cv
    _Atomic int caller_waiting; // caller blocked (or about to block) on done_cv
    _Atomic long done;          // indices of the current call finished
    _Atomic unsigned long long claim; // (generation << 32) | next index; index CLOSED between calls
    _Atomic int busy;           // a call is in flight (other callers run serially)
    _Atomic int stop;
    _Atomic long count;
    banyan_task_fn fn;
    void *context;
};

static _Thread_local int in_task = 0;

static long now_nanos(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

// Claims and runs indices of generation `gen` until none is left. The fields read after a
// successful claim are stable: the caller rewrites them only after closing the claim word, which
// makes every stale compare-exchange fail.
static void run_indices(banyan_pool *p, unsigned long gen) {
    in_task = 1;
    for (;;) {
        unsigned long long cur = atomic_load(&p->claim);
        if ((unsigned long)(cur >> 32) != (gen & 0xFFFFFFFFul)) break;
        unsigned int i = (unsigned int)(cur & 0xFFFFFFFFu);
        if (i == CLOSED || (long)i >= p->count) break;
        if (!atomic_compare_exchange_weak(&p->claim, &cur, cur + 1)) continue;
        p->fn(p->context, (long)i);
        if (atomic_fetch_add(&p->done, 1) + 1 == p->count && atomic_load(&p->caller_waiting)) {
            pthread_mutex_lock(&p->mutex);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mutex);
        }
    }
    in_task = 0;
}

static void *worker_main(void *arg) {
    banyan_pool *p = arg;
    unsigned long seen = 0;
    for (;;) {
        unsigned long gen = atomic_load(&p->generation);
        if (gen == seen) {
            long start = now_nanos();
            int spins = 0;
            while ((gen = atomic_load(&p->generation)) == seen) {
                CPU_RELAX();
                if ((++spins & 63) == 0 && now_nanos() - start > SPIN_NANOS) break;
            }
            if (gen == seen) {
                pthread_mutex_lock(&p->mutex);
                atomic_fetch_add(&p->sleepers, 1);
                while ((gen = atomic_load(&p->generation)) == seen) pthread_cond_wait(&p->work_cv, &p->mutex);
                atomic_fetch_sub(&p->sleepers, 1);
                pthread_mutex_unlock(&p->mutex);
            }
        }
        seen = gen;
        if (atomic_load(&p->stop)) return NULL;
        run_indices(p, gen);
    }
}

banyan_pool *banyan_pool_create(int threads) {
    banyan_pool *p = calloc(1, sizeof *p);
    p->worker_count = threads > 1 ? threads - 1 : 0;
    p->threads = calloc((size_t)(p->worker_count + 1), sizeof(pthread_t));
    pthread_mutex_init(&p->mutex, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    for (int t = 0; t < p->worker_count; t++) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 8u << 20);
        pthread_create(&p->threads[t], &attr, worker_main, p);
        pthread_attr_destroy(&attr);
    }
    return p;
}

static void publish(banyan_pool *p) {
    atomic_fetch_add(&p->generation, 1);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mutex);
        pthread_cond_broadcast(&p->work_cv);
        pthread_mutex_unlock(&p->mutex);
    }
}

void banyan_pool_destroy(banyan_pool *p) {
    atomic_store(&p->stop, 1);
    publish(p);
    for (int t = 0; t < p->worker_count; t++) pthread_join(p->threads[t], NULL);
    pthread_cond_destroy(&p->work_cv);
    pthread_cond_destroy(&p->done_cv);
    pthread_mutex_destroy(&p->mutex);
    free(p->threads);
    free(p);
}

void banyan_pool_run(banyan_pool *p, long count, banyan_task_fn fn, void *context) {
    if (count <= 0) return;
    int expected = 0;
    if (p->worker_count == 0 || count == 1 || in_task ||
        !atomic_compare_exchange_strong(&p->busy, &expected, 1)) {
        int outer = in_task;
        in_task = 1;
        for (long i = 0; i < count; i++) fn(context, i);
        in_task = outer;
        return;
    }
    // The claim word is CLOSED since the last call, so no worker touches the fields being written.
    unsigned long gen = atomic_load(&p->generation) + 1;
    p->count = count;
    p->fn = fn;
    p->context = context;
    atomic_store(&p->done, 0);
    atomic_store(&p->claim, (unsigned long long)(gen & 0xFFFFFFFFul) << 32);
    publish(p); // seq_cst: the fields above are visible to a worker that sees the new generation

    run_indices(p, gen);

    if (atomic_load(&p->done) < count) {
        long start = now_nanos();
        int spins = 0;
        while (atomic_load(&p->done) < count) {
            CPU_RELAX();
            if ((++spins & 63) == 0 && now_nanos() - start > SPIN_NANOS) break;
        }
        if (atomic_load(&p->done) < count) {
            pthread_mutex_lock(&p->mutex);
            atomic_store(&p->caller_waiting, 1);
            while (atomic_load(&p->done) < count) pthread_cond_wait(&p->done_cv, &p->mutex);
            atomic_store(&p->caller_waiting, 0);
            pthread_mutex_unlock(&p->mutex);
        }
    }
    atomic_store(&p->claim, ((unsigned long long)(gen & 0xFFFFFFFFul) << 32) | CLOSED);
    atomic_store(&p->busy, 0);
}
