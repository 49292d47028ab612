"""The service layer: plain functions taking the session first. The only code that touches SQL.

Services raise ``darl_core.errors`` exceptions; the edges (pages, CLI) turn them into messages.
Services that act for a user take ``actor: User`` and check the role here, not only in the UI.
"""
