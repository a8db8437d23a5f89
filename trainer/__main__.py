from .cli import cli, run_cli

if __name__ == "__main__":
    run_cli(cli, prog_name="python -m vae_edge.trainer")
