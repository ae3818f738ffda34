#include "ops.h"
namespace cr::cpu {
void RegisterSgd(Napi::Env, Napi::Object) {}
}  // namespace cr::cpu
