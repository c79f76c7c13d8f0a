//! `refreshd exec`: checks the credentials it names against the config, then hands over to
//! [`crate::exec`] and exits with the program's status.

use crate::cli::Exit;
use crate::config::Config;
use crate::exec::Options;

pub async fn run(config: Config, options: Options) -> anyhow::Result<Exit> {
    crate::log::init(config.log.level.as_str(), config.log.format);
    if options
        .bindings
        .iter()
        .any(|binding| super::credential(&config, &binding.credential).is_none())
    {
        return Ok(Exit::Invalid);
    }
    let mut vars: Vec<&str> = options.bindings.iter().map(|b| b.var.as_str()).collect();
    vars.sort_unstable();
    if let Some(twice) = vars.windows(2).find(|w| w[0] == w[1]) {
        eprintln!("refreshd: --env {}= is given twice", twice[0]);
        return Ok(Exit::Invalid);
    }
    match crate::exec::run(config, options).await {
        Ok(status) => Ok(Exit::Program(status)),
        Err(e) => {
            eprintln!("refreshd: {e}");
            Ok(Exit::Program(e.status()))
        }
    }
}
