//! Four f32 lanes: wasm simd128 where the build has it, plain arrays elsewhere (native
//! builds run the same kernels, for the tests, and LLVM vectorises them there).

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod imp {
    use core::arch::wasm32::*;

    #[derive(Clone, Copy)]
    pub struct F32x4(v128);

    impl F32x4 {
        #[inline(always)]
        pub fn splat(value: f32) -> Self {
            Self(f32x4_splat(value))
        }

        /// One value in every lane, loaded and splatted in one instruction (`v128.load32_splat`).
        #[inline(always)]
        pub fn load_splat(value: &f32) -> Self {
            // SAFETY: the reference is 4 readable bytes.
            Self(unsafe { v128_load32_splat((value as *const f32).cast()) })
        }

        #[inline(always)]
        pub fn load(values: &[f32; 4]) -> Self {
            // SAFETY: the array is 16 readable bytes; v128.load needs no alignment.
            Self(unsafe { v128_load(values.as_ptr().cast()) })
        }

        #[inline(always)]
        pub fn store(self, out: &mut [f32; 4]) {
            // SAFETY: the array is 16 writable bytes; v128.store needs no alignment.
            unsafe { v128_store(out.as_mut_ptr().cast(), self.0) }
        }

        /// `self + a * b` (two instructions: simd128 has no fused multiply-add).
        #[cfg(not(fma))]
        #[inline(always)]
        pub fn mul_add(self, a: Self, b: Self) -> Self {
            Self(f32x4_add(self.0, f32x4_mul(a.0, b.0)))
        }

        /// `self + a * b` in one instruction, relaxed SIMD's `f32x4.relaxed_madd`: fused
        /// (rounded once) where the CPU has FMA, as two rounded operations elsewhere, the same
        /// way on every call in one browser. A module with it does not validate in a browser
        /// without relaxed SIMD, so the page loads it only where a probe validates.
        #[cfg(fma)]
        #[inline]
        #[target_feature(enable = "relaxed-simd")]
        pub fn mul_add(self, a: Self, b: Self) -> Self {
            Self(f32x4_relaxed_madd(a.0, b.0, self.0))
        }

        #[inline(always)]
        pub fn add(self, other: Self) -> Self {
            Self(f32x4_add(self.0, other.0))
        }

        #[inline(always)]
        pub fn sub(self, other: Self) -> Self {
            Self(f32x4_sub(self.0, other.0))
        }

        #[inline(always)]
        pub fn mul(self, other: Self) -> Self {
            Self(f32x4_mul(self.0, other.0))
        }

        #[inline(always)]
        pub fn max(self, other: Self) -> Self {
            Self(f32x4_pmax(self.0, other.0))
        }
    }
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod imp {
    #[derive(Clone, Copy)]
    pub struct F32x4([f32; 4]);

    impl F32x4 {
        #[inline(always)]
        pub fn splat(value: f32) -> Self {
            Self([value; 4])
        }

        #[inline(always)]
        pub fn load_splat(value: &f32) -> Self {
            Self([*value; 4])
        }

        #[inline(always)]
        pub fn load(values: &[f32; 4]) -> Self {
            Self(*values)
        }

        #[inline(always)]
        pub fn store(self, out: &mut [f32; 4]) {
            *out = self.0;
        }

        /// `self + a * b`, unfused, as on wasm.
        #[inline(always)]
        pub fn mul_add(self, a: Self, b: Self) -> Self {
            Self(std::array::from_fn(|i| self.0[i] + a.0[i] * b.0[i]))
        }

        #[inline(always)]
        pub fn add(self, other: Self) -> Self {
            Self(std::array::from_fn(|i| self.0[i] + other.0[i]))
        }

        #[inline(always)]
        pub fn sub(self, other: Self) -> Self {
            Self(std::array::from_fn(|i| self.0[i] - other.0[i]))
        }

        #[inline(always)]
        pub fn mul(self, other: Self) -> Self {
            Self(std::array::from_fn(|i| self.0[i] * other.0[i]))
        }

        /// `self < other ? other : self`, as wasm's `f32x4.pmax`.
        #[inline(always)]
        pub fn max(self, other: Self) -> Self {
            Self(std::array::from_fn(|i| {
                if self.0[i] < other.0[i] {
                    other.0[i]
                } else {
                    self.0[i]
                }
            }))
        }
    }
}

pub use imp::F32x4;
