/* dossier_state.h: names of dossier states and their national-portal status codes.
 * (The full transition table arrives with the lifecycle; this is its vocabulary.) */
#ifndef MC_DOSSIER_STATE_H
#define MC_DOSSIER_STATE_H

#include "motcua/events.pb-c.h"

typedef Motcua__V1__DossierState mc_state_t;

/* "SUBMITTED", "IN_PROGRESS", ...; "UNSPECIFIED" for unknown values. */
const char *mc_state_name(mc_state_t state);
/* The national portal's status code (1..10) for a state; 0 if none. */
int mc_state_national(mc_state_t state);
/* "online", "direct", "postal" or NULL; and back (CHANNEL_UNSPECIFIED if unknown). */
const char *mc_channel_name(Motcua__V1__Channel channel);
Motcua__V1__Channel mc_channel_parse(const char *name);

#endif
