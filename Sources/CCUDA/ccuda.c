// CCUDA is declarations only; this file exists because a C target needs one source.
#include "CCUDA.h"
