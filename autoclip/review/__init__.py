"""The review queue (``queue``), what the UI shows of an item (``preview``) and the Textual UI
(``app``, imported only by ``autoclip review``)."""
