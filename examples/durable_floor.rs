//! The floor under refreshd's file work: the CPU the kernel and file system alone spend on
//! one durable replacement, the way `src/durable` does it (a ~1 KiB temp file `DIR/.NAME.tmp`
//! created O_CREAT|O_EXCL, `sync_all`, `rename` over NAME, then `sync_all` on DIR).
//! A rotation does two (state file and target). `scripts/bench` runs this and divides the
//! child's user+sys CPU by the count it prints.
//!
//! Usage: `durable_floor DIR N ROUNDS` creates the N files in DIR that are missing, replaces
//! each one ROUNDS times and prints the number of replacements done. Run it once before
//! measuring, so that the measured run replaces files already on disk, as a daemon does.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, n, rounds] = args.as_slice() else {
        return Err("usage: durable_floor DIR N ROUNDS".into());
    };
    let dir = Path::new(dir);
    let (n, rounds): (usize, usize) = (n.parse()?, rounds.parse()?);
    fs::create_dir_all(dir)?;
    let names: Vec<String> = (0..n).map(|i| format!("f{i:05}")).collect();
    for name in &names {
        if !dir.join(name).exists() {
            fs::write(dir.join(name), b"initial\n")?;
        }
    }
    let mut body = vec![b'x'; 1024];
    let mut done: u64 = 0;
    for round in 0..rounds {
        body[0] = b'a' + (round % 26) as u8;
        for name in &names {
            let temp = dir.join(format!(".{name}.tmp"));
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)?;
            file.write_all(&body)?;
            file.sync_all()?;
            drop(file);
            fs::rename(&temp, dir.join(name))?;
            File::open(dir)?.sync_all()?;
            done += 1;
        }
    }
    println!("{done}");
    Ok(())
}
