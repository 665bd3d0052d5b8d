/* portal.h: what portal.c and reconcile.c share — the national portal's worker state. */
#ifndef PORTAL_H
#define PORTAL_H

#include "interconnect.h"

struct portal {
    interconnect_t *ic;
    int enabled; /* MOTCUA_PORTAL_URL set and MOTCUA_PORTAL_SYNC not off */
    /* The push worker (portal.c); its fetcher and stop serve reconciliation too (a run
     * is held: mc_outcall_hold). */
    mc_outcall_t *worker;
    char *push_url;   /* <MOTCUA_PORTAL_URL>/status */
    char *lookup_url; /* <MOTCUA_PORTAL_URL>/dossiers/lookup */
    /* The reconciliation run of this process, if any (reconcile.c). */
    struct reconcile_run *run;
    char last_day[16]; /* the local day the scheduled run was last tried */
};

#endif
