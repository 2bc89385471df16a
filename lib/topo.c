/*
 * hwloc: cores, pinning and victim order.
 *
 * hwloc reports the whole machine even when the process may use only some
 * of it (taskset, cgroups), so the plan intersects what it finds with the
 * process's own binding and never places a worker outside it.  Synthetic
 * topologies (HWLOC_SYNTHETIC) describe machines larger than this one:
 * binding on them does nothing, and the plan is what tests check.
 */
#include "topo.h"

#include <wsched.h>

#include <ctype.h>
#include <errno.h>
#include <hwloc.h>
#include <stdlib.h>

struct ws__plan {
    hwloc_topology_t topo;
    unsigned nworkers;
    unsigned ncores;
    int bind;
    hwloc_obj_t *obj;        /* per worker: its core or PU */
    hwloc_bitmap_t *set;     /* per worker: the CPUs it is bound to */
    unsigned *victims;       /* nworkers rows of nworkers - 1 */
    unsigned *levels;        /* nworkers rows of nworkers - 1 level ends */
    unsigned *nlevels;       /* per worker */
};

int
ws__plan_check_list(const char *s)
{
    /* number [- number] {, number [- number]} */
    if (s == NULL || *s == '\0')
        return EINVAL;
    for (;;) {
        char *end;
        if (!isdigit((unsigned char)*s))
            return EINVAL;
        unsigned long a = strtoul(s, &end, 10), b = a;
        s = end;
        if (*s == '-') {
            s++;
            if (!isdigit((unsigned char)*s))
                return EINVAL;
            b = strtoul(s, &end, 10);
            s = end;
        }
        if (b < a || b > 65535)
            return EINVAL;
        if (*s == '\0')
            return 0;
        if (*s++ != ',')
            return EINVAL;
    }
}

void
ws__plan_destroy(ws__plan *p)
{
    if (p == NULL)
        return;
    if (p->set != NULL)
        for (unsigned w = 0; w < p->nworkers; w++)
            hwloc_bitmap_free(p->set[w]);
    free(p->set);
    free(p->obj);
    free(p->victims);
    free(p->levels);
    free(p->nlevels);
    if (p->topo != NULL)
        hwloc_topology_destroy(p->topo);
    free(p);
}

/* The CPUs the process may use, narrowed by the list cpus. */
static int
allowed_set(hwloc_topology_t topo, const char *cpus, hwloc_bitmap_t out)
{
    hwloc_bitmap_copy(out, hwloc_topology_get_allowed_cpuset(topo));
    if (hwloc_topology_is_thissystem(topo)) {
        hwloc_bitmap_t b = hwloc_bitmap_alloc();
        if (b == NULL)
            return ENOMEM;
        if (hwloc_get_cpubind(topo, b, HWLOC_CPUBIND_PROCESS) == 0 &&
            !hwloc_bitmap_iszero(b))
            hwloc_bitmap_and(out, out, b);
        hwloc_bitmap_free(b);
    }
    if (cpus != NULL) {
        hwloc_bitmap_t l = hwloc_bitmap_alloc();
        if (l == NULL)
            return ENOMEM;
        int bad = ws__plan_check_list(cpus) != 0 ||
                  hwloc_bitmap_list_sscanf(l, cpus) != 0;
        if (!bad)
            hwloc_bitmap_and(out, out, l);
        hwloc_bitmap_free(l);
        if (bad)
            return EINVAL;
    }
    return hwloc_bitmap_iszero(out) ? EINVAL : 0;
}

/*
 * Places: one per core that has an allowed PU (WS_BIND_CORE, WS_BIND_NONE),
 * or one per allowed PU, taking the first PU of every core, then the
 * second, and so on, so that workers spread over cores first (WS_BIND_PU).
 */
static unsigned
list_places(hwloc_topology_t topo, hwloc_const_bitmap_t allowed, int bind,
            hwloc_obj_t *objs, unsigned max)
{
    int type = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE) > 0
                   ? HWLOC_OBJ_CORE
                   : HWLOC_OBJ_PU;
    unsigned n = 0, ncores = hwloc_get_nbobjs_by_type(topo, type);

    if (bind != WS_BIND_PU || type == HWLOC_OBJ_PU) {
        for (unsigned i = 0; i < ncores && n < max; i++) {
            hwloc_obj_t o = hwloc_get_obj_by_type(topo, type, i);
            if (hwloc_bitmap_intersects(o->cpuset, allowed))
                objs[n++] = o;
        }
        return n;
    }
    for (unsigned k = 0;; k++) {
        unsigned found = 0;
        for (unsigned i = 0; i < ncores && n < max; i++) {
            hwloc_obj_t core = hwloc_get_obj_by_type(topo, type, i);
            unsigned seen = 0;
            for (unsigned j = 0; j < core->arity || core->arity == 0; j++) {
                hwloc_obj_t pu = hwloc_get_obj_inside_cpuset_by_type(
                    topo, core->cpuset, HWLOC_OBJ_PU, j);
                if (pu == NULL)
                    break;
                if (!hwloc_bitmap_isset(allowed, pu->os_index))
                    continue;
                if (seen++ == k) {
                    objs[n++] = pu;
                    found = 1;
                    break;
                }
            }
        }
        if (!found || n == max)
            return n;
    }
}

static int
closer_first(const void *a, const void *b)
{
    const unsigned *x = a, *y = b;
    /* Rows are (depth, rotation index, worker): deeper first, then order. */
    if (x[0] != y[0])
        return x[0] > y[0] ? -1 : 1;
    return (x[1] > y[1]) - (x[1] < y[1]);
}

static int
plan_victims(ws__plan *p)
{
    unsigned n = p->nworkers, m = n > 1 ? n - 1 : 1;
    unsigned(*rows)[3] = malloc(sizeof *rows * m);

    p->victims = malloc(sizeof(unsigned) * n * m);
    p->levels = malloc(sizeof(unsigned) * n * m);
    p->nlevels = calloc(n, sizeof(unsigned));
    if (rows == NULL || p->victims == NULL || p->levels == NULL ||
        p->nlevels == NULL) {
        free(rows);
        return ENOMEM;
    }
    for (unsigned w = 0; w < n; w++) {
        unsigned k = 0;
        for (unsigned j = 0; j < n; j++) {
            if (j == w)
                continue;
            hwloc_obj_t a = p->obj[w], b = p->obj[j];
            unsigned depth =
                a == b ? (unsigned)a->depth + 1
                       : (unsigned)hwloc_get_common_ancestor_obj(p->topo, a, b)
                             ->depth;
            rows[k][0] = depth;
            rows[k][1] = (j + n - w) % n;
            rows[k][2] = j;
            k++;
        }
        qsort(rows, k, sizeof rows[0], closer_first);
        unsigned nl = 0;
        for (unsigned i = 0; i < k; i++) {
            p->victims[w * m + i] = rows[i][2];
            if (i + 1 == k || rows[i + 1][0] != rows[i][0])
                p->levels[w * m + nl++] = i + 1;
        }
        p->nlevels[w] = nl;
    }
    free(rows);
    return 0;
}

int
ws__plan_create(ws__plan **out, unsigned workers, int bind, const char *cpus)
{
    if (bind != WS_BIND_CORE && bind != WS_BIND_PU && bind != WS_BIND_NONE)
        return EINVAL;
    if (cpus != NULL && ws__plan_check_list(cpus) != 0)
        return EINVAL;

    ws__plan *p = calloc(1, sizeof *p);
    hwloc_bitmap_t allowed = hwloc_bitmap_alloc();
    hwloc_obj_t *places = NULL;
    int err = ENOMEM;

    if (p == NULL || allowed == NULL)
        goto fail;
    p->bind = bind;
    if (hwloc_topology_init(&p->topo) != 0) {
        p->topo = NULL;
        goto fail;
    }
    if (hwloc_topology_load(p->topo) != 0) {
        err = ENOSYS;
        goto fail;
    }
    if ((err = allowed_set(p->topo, cpus, allowed)) != 0)
        goto fail;
    err = ENOMEM;

    unsigned npu = hwloc_get_nbobjs_by_type(p->topo, HWLOC_OBJ_PU);
    places = malloc(sizeof *places * (npu ? npu : 1));
    if (places == NULL)
        goto fail;
    p->ncores = list_places(p->topo, allowed,
                            bind == WS_BIND_PU ? WS_BIND_CORE : bind, places,
                            npu);
    unsigned nplaces = bind == WS_BIND_PU
                           ? list_places(p->topo, allowed, bind, places, npu)
                           : p->ncores;
    if (nplaces == 0) {
        err = EINVAL;
        goto fail;
    }
    p->nworkers = workers ? workers : p->ncores;
    p->obj = calloc(p->nworkers, sizeof *p->obj);
    p->set = calloc(p->nworkers, sizeof *p->set);
    if (p->obj == NULL || p->set == NULL)
        goto fail;
    for (unsigned w = 0; w < p->nworkers; w++) {
        p->obj[w] = places[w % nplaces];
        p->set[w] = hwloc_bitmap_alloc();
        if (p->set[w] == NULL)
            goto fail;
        hwloc_bitmap_and(p->set[w], p->obj[w]->cpuset, allowed);
    }
    if (plan_victims(p) != 0)
        goto fail;
    free(places);
    hwloc_bitmap_free(allowed);
    *out = p;
    return 0;
fail:
    free(places);
    if (allowed != NULL)
        hwloc_bitmap_free(allowed);
    ws__plan_destroy(p);
    return err;
}

unsigned
ws__plan_workers(const ws__plan *p)
{
    return p->nworkers;
}

unsigned
ws__plan_cores(const ws__plan *p)
{
    return p->ncores;
}

int
ws__plan_place(const ws__plan *p, unsigned w)
{
    return hwloc_bitmap_first(p->set[w]);
}

int
ws__plan_bind(const ws__plan *p, unsigned w)
{
    if (p->bind == WS_BIND_NONE)
        return 0;
    return hwloc_set_cpubind(p->topo, p->set[w], HWLOC_CPUBIND_THREAD) == 0
               ? 0
               : ENOSYS;
}

const unsigned *
ws__plan_victims(const ws__plan *p, unsigned w, unsigned *n)
{
    *n = p->nworkers - 1;
    return p->victims + (size_t)w * (p->nworkers > 1 ? p->nworkers - 1 : 1);
}

const unsigned *
ws__plan_levels(const ws__plan *p, unsigned w, unsigned *nlevels)
{
    *nlevels = p->nlevels[w];
    return p->levels + (size_t)w * (p->nworkers > 1 ? p->nworkers - 1 : 1);
}
