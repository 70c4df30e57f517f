fn main() -> std::process::ExitCode {
    // Before any other thread exists: see `agent::malloc::tune`.
    agent::malloc::tune();
    agent::cli::main()
}
