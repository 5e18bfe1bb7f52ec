"""How the reference runs in production: gunicorn's config, its uvicorn worker, nginx in front.

README.md, "Deploying", shows the commands; ``nox -s cluster`` runs exactly these.
"""
