//! The `winsandbox` command: see `winsandbox --help`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = winsandbox::cli::main_with(
        &args,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    std::process::exit(code);
}
