# An app image whose PHP mail() goes through tlsrelay: the relay's binary,
# copied in as /usr/sbin/sendmail, submits each message to the relay over
# SMTP (its name, sendmail, makes it `tlsrelay sendmail`). The binary is
# static, so it runs on any base image.
#
#   docker build -t tlsrelay .                               # the relay's image
#   docker build -f deploy/sendmail/Dockerfile.php -t my-php-app deploy/sendmail
#
# Run it beside the relay (deploy/docker-compose.yml, or the Kubernetes
# sidecar in deploy/kubernetes/tlsrelay.yaml) with TLSRELAY_SERVER naming
# the relay's listen address.
FROM tlsrelay:latest AS tlsrelay

FROM php:8.3-apache
COPY --from=tlsrelay /usr/local/bin/tlsrelay /usr/sbin/sendmail
COPY php-sendmail.ini /usr/local/etc/php/conf.d/sendmail.ini
# The relay's address; in a Kubernetes pod with the relay as sidecar,
# 127.0.0.1:2525.
ENV TLSRELAY_SERVER=tlsrelay:2525
