"""Media: uploads of images, audio and video, their storage, and serving them
(docs/media.md). Plugins use ``app.media`` (:class:`kpay.core.media.service.MediaService`).
"""
