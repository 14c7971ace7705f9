"""Local web viewer over run directories (runs/<id>/): runs list, live run page, task views.

Entry points: `orchestrator.viewer.server.ViewerServer` (and `m3lab ui`), `orchestrator.viewer.app.create_app`.
"""
