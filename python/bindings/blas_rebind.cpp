// Points libmlx's cblas_{s,d,c}gemm at OpenBLAS inside a Python process.
//
// Why: the mlx[cpu] wheel's libmlx.so binds its fp32 matmuls to the reference netlib BLAS it bundles.
// The mlxgp executable lists OpenBLAS as a direct dependency, which the dynamic linker searches first,
// so there libmlx's matmuls run on OpenBLAS. Python loads extensions with RTLD_NOW, so by the time
// this module loads, `import mlx.core` has already bound libmlx's PLT slots to the bundled BLAS and a
// later RTLD_GLOBAL promotion changes nothing: decode ran 7-13% slower than the CLI (issue #9). Here we
// rewrite those three GOT slots with OpenBLAS's addresses, which is what the executable's symbol
// lookup produced. Linux/ELF only; MLXGP_KEEP_MLX_BLAS=1 leaves libmlx untouched.
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "bindings.h"

namespace mlxgp::py {
namespace {

struct Target {
  const ElfW(Phdr) * phdr = nullptr;
  ElfW(Half) phnum = 0;
  ElfW(Addr) base = 0;
  bool found = false;
};

int find_libmlx(struct dl_phdr_info* info, size_t, void* data) {
  const char* name = info->dlpi_name;
  const char* slash = name ? std::strrchr(name, '/') : nullptr;
  if (!slash || std::strcmp(slash + 1, "libmlx.so") != 0) return 0;
  auto* t = static_cast<Target*>(data);
  t->phdr = info->dlpi_phdr;
  t->phnum = info->dlpi_phnum;
  t->base = info->dlpi_addr;
  t->found = true;
  return 1;
}

// glibc relocates some d_ptr values in place, other loaders do not: accept both.
ElfW(Addr) absolute(ElfW(Addr) base, ElfW(Addr) p) { return p < base ? base + p : p; }

bool write_slot(void** slot, void* value) {
  const long page = sysconf(_SC_PAGESIZE);
  auto* start = reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(slot) & ~static_cast<uintptr_t>(page - 1));
  // A slot under RELRO is read-only after relocation (.got.plt usually is not): open the page for the
  // write; the caller closes RELRO pages again.
  if (mprotect(start, page, PROT_READ | PROT_WRITE) != 0) return false;
  __atomic_store_n(slot, value, __ATOMIC_RELEASE);
  return true;
}

// Calls fn(name, slot, in_relro) for each of libmlx's cblas_{s,d,c}gemm PLT slots.
template <class Fn>
void for_each_gemm_slot(Fn fn) {
  Target t;
  dl_iterate_phdr(find_libmlx, &t);
  if (!t.found) return;
  const ElfW(Dyn)* dyn = nullptr;
  ElfW(Addr) relro_lo = 0, relro_hi = 0;
  for (ElfW(Half) i = 0; i < t.phnum; ++i) {
    if (t.phdr[i].p_type == PT_DYNAMIC) dyn = reinterpret_cast<const ElfW(Dyn)*>(t.base + t.phdr[i].p_vaddr);
    if (t.phdr[i].p_type == PT_GNU_RELRO) {
      // The pages the dynamic linker made read-only: whole pages only (glibc _dl_protect_relro rounds
      // both ends down), so a partial last page stays writable and must stay so.
      const auto page = static_cast<ElfW(Addr)>(sysconf(_SC_PAGESIZE));
      relro_lo = (t.base + t.phdr[i].p_vaddr) & ~(page - 1);
      relro_hi = (t.base + t.phdr[i].p_vaddr + t.phdr[i].p_memsz) & ~(page - 1);
    }
  }
  if (!dyn) return;
  ElfW(Addr) jmprel = 0, symtab = 0, strtab = 0;
  size_t pltrelsz = 0;
  ElfW(Sxword) pltrel = 0;
  for (const ElfW(Dyn)* d = dyn; d->d_tag != DT_NULL; ++d) {
    switch (d->d_tag) {
      case DT_JMPREL:
        jmprel = absolute(t.base, d->d_un.d_ptr);
        break;
      case DT_PLTRELSZ:
        pltrelsz = d->d_un.d_val;
        break;
      case DT_PLTREL:
        pltrel = static_cast<ElfW(Sxword)>(d->d_un.d_val);
        break;
      case DT_SYMTAB:
        symtab = absolute(t.base, d->d_un.d_ptr);
        break;
      case DT_STRTAB:
        strtab = absolute(t.base, d->d_un.d_ptr);
        break;
      default:
        break;
    }
  }
  if (!jmprel || !symtab || !strtab || pltrel != DT_RELA) return;
  const auto* rel = reinterpret_cast<const ElfW(Rela)*>(jmprel);
  const auto* syms = reinterpret_cast<const ElfW(Sym)*>(symtab);
  const auto* strs = reinterpret_cast<const char*>(strtab);
  for (size_t i = 0; i < pltrelsz / sizeof(ElfW(Rela)); ++i) {
    const char* name = strs + syms[ELF64_R_SYM(rel[i].r_info)].st_name;
    if (std::strcmp(name, "cblas_sgemm") != 0 && std::strcmp(name, "cblas_dgemm") != 0 &&
        std::strcmp(name, "cblas_cgemm") != 0)
      continue;
    auto** slot = reinterpret_cast<void**>(t.base + rel[i].r_offset);
    const auto addr = reinterpret_cast<ElfW(Addr)>(slot);
    fn(name, slot, addr >= relro_lo && addr < relro_hi);
  }
}

}  // namespace

int rebind_mlx_blas(const char* openblas_path) {
  if (const char* e = std::getenv("MLXGP_KEEP_MLX_BLAS"); e && *e && std::string(e) != "0") return 0;
  void* blas = dlopen(openblas_path, RTLD_NOW | RTLD_NOLOAD);
  if (!blas) return 0;
  const long page = sysconf(_SC_PAGESIZE);
  int rebound = 0;
  for_each_gemm_slot([&](const char* name, void** slot, bool in_relro) {
    void* fn = dlsym(blas, name);
    if (!fn || !write_slot(slot, fn)) return;
    if (in_relro) {
      auto* start = reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(slot) & ~static_cast<uintptr_t>(page - 1));
      mprotect(start, page, PROT_READ);
    }
    ++rebound;
  });
  dlclose(blas);  // drops only the reference RTLD_NOLOAD added; _core's own link keeps it loaded
  return rebound;
}

std::string mlx_sgemm_library() {
  std::string path;
  for_each_gemm_slot([&](const char* name, void** slot, bool) {
    Dl_info info{};
    // An unresolved lazy slot points back into libmlx's PLT: that reads as libmlx itself.
    if (std::strcmp(name, "cblas_sgemm") == 0 && dladdr(*slot, &info) && info.dli_fname) path = info.dli_fname;
  });
  return path;
}

}  // namespace mlxgp::py
