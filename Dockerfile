FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    HOST=0.0.0.0 \
    PORT=7860 \
    SPOONFEEDER_DATA_DIR=/data \
    MEDIA_STORAGE_PATH=/data/media

WORKDIR /app
COPY requirements.txt requirements.lock ./
RUN pip install --no-cache-dir -r requirements.txt -c requirements.lock

COPY . .
RUN useradd --create-home --uid 1000 spoonfeeder && mkdir -p /data && chown spoonfeeder /data
USER spoonfeeder
VOLUME ["/data"]
EXPOSE 7860

CMD ["python", "app.py"]
