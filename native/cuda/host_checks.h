// Test-only functions that run without a GPU (host_checks.cc); not part of the Binding surface.
#pragma once

#include <napi.h>

namespace cr::cuda {

void RegisterHostChecks(Napi::Env env, Napi::Object exports);

}  // namespace cr::cuda
