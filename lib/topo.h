/*
 * Placement plan: which CPUs each worker runs on and in which order it
 * picks victims.  The only module that knows hwloc.
 */
#ifndef WS_TOPO_H
#define WS_TOPO_H

typedef struct ws__plan ws__plan;

/*
 * Discovers the machine (or the synthetic one in HWLOC_SYNTHETIC), keeps
 * the CPUs this process may use, intersected with the list cpus (taskset
 * syntax, NULL for all), and plans workers (0: one per core) bound per
 * bind (WS_BIND_*).  0, EINVAL (bad list, no CPU left, bad bind) or ENOMEM.
 */
int  ws__plan_create(ws__plan **plan, unsigned workers, int bind,
                     const char *cpus);
void ws__plan_destroy(ws__plan *plan);

unsigned ws__plan_workers(const ws__plan *plan);
/* Cores in the allowed set: the default worker count. */
unsigned ws__plan_cores(const ws__plan *plan);
/* The lowest OS index of the PUs worker w is bound to (WS_BIND_NONE too). */
int      ws__plan_place(const ws__plan *plan, unsigned w);
/* Binds the calling thread as worker w: 0, or ENOSYS when it could not. */
int      ws__plan_bind(const ws__plan *plan, unsigned w);

/*
 * Worker w's victims, closest first: *n of them, in *nlevels levels; level
 * k is victims[levels[k - 1] .. levels[k]) (levels[-1] taken as 0).  The
 * workers of one level share the same closest cache or node with w.
 */
const unsigned *ws__plan_victims(const ws__plan *plan, unsigned w,
                                 unsigned *n);
const unsigned *ws__plan_levels(const ws__plan *plan, unsigned w,
                                unsigned *nlevels);

/* Whether a CPU list is well formed ("0-3,8"): 0 or EINVAL. */
int ws__plan_check_list(const char *cpus);

#endif /* WS_TOPO_H */
