# nginx: the integration suite also runs behind nginx with the shipped conf/nginx/taskwire.conf,
# the FastCGI handler started by spawn-fcgi (nginx does not spawn FastCGI programs).  In
# Debian 12 the package "nginx" is the server itself (nginx-light/-core add modules to it).
DEBS_TEST += nginx spawn-fcgi
