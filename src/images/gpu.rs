//! Whether this machine can give NVIDIA GPUs to containers: the driver's
//! NVML library loads and sees a GPU, and the Docker engine can pass GPUs
//! (its `nvidia` device driver needs the NVIDIA Container Toolkit's hook on
//! the `PATH`). Only libraries are loaded to know it; nothing is started.

/// NVML, loaded: the driver's library answered and sees this many GPUs.
pub struct Nvml {
    /// The library's handle.
    pub nvml: nvml_wrapper::Nvml,
    /// How many GPUs the driver sees.
    pub count: u32,
}

/// Loads NVML; why not, in words, when the machine has no NVIDIA driver or
/// no GPU.
pub fn nvml() -> Result<Nvml, String> {
    let nvml = nvml_wrapper::Nvml::init().map_err(|e| match e {
        nvml_wrapper::error::NvmlError::LibloadingError(_) => {
            "this machine has no NVIDIA driver (libnvidia-ml.so.1 cannot be loaded)".to_string()
        }
        e => format!("NVML does not start: {e}"),
    })?;
    let count = nvml
        .device_count()
        .map_err(|e| format!("NVML cannot count the GPUs: {e}"))?;
    if count == 0 {
        return Err("the NVIDIA driver sees no GPU".into());
    }
    Ok(Nvml { nvml, count })
}

/// The program Docker's `nvidia` device driver needs (`--gpus`).
const HOOK: &str = "nvidia-container-runtime-hook";

/// How many GPUs a container can be given here; why none, in words.
pub fn for_containers() -> Result<u32, String> {
    let n = nvml()?.count;
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(HOOK).is_file()))
        .unwrap_or(false);
    if !on_path {
        return Err(format!(
            "this machine has {n} GPU(s), but Docker cannot give them to containers ({HOOK} is not on the PATH: the NVIDIA Container Toolkit is not installed)"
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_driver_is_a_reason_not_a_crash() {
        match for_containers() {
            Ok(n) => assert!(n > 0),
            // No driver loaded: no library, or one that cannot start.
            Err(why) if !std::path::Path::new("/proc/driver/nvidia").exists() => {
                assert!(
                    why.contains("libnvidia-ml.so.1") || why.contains("NVML"),
                    "{why}"
                )
            }
            Err(why) => assert!(why.contains("GPU"), "{why}"),
        }
    }
}
